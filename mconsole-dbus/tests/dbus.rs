//! umld against a private dbus-daemon and real UML guests, driven with busctl and gdbus.

mod util;

use std::path::Path;
use std::time::Duration;

use testkit::{GuestBuilder, UmlDir};
use util::*;

fn image(dir: &std::path::Path, name: &str) -> String {
    let path = dir.join(name);
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(4 << 20).unwrap();
    path.display().to_string()
}

#[test]
fn guest_started_outside_appears_with_properties_and_answers_every_call() {
    let bus = Bus::start();
    let dir = UmlDir::new();
    let _umld = Umld::start(&bus, dir.path());
    let monitor = Monitor::start(&bus);
    let guest = GuestBuilder::new("ud-out")
        .uml_dir(dir.path())
        .boot()
        .unwrap();
    let path = path_of(guest.umid());

    monitor.wait_for(&["MachineNew", guest.umid(), &path]);
    wait_until("the guest is listed as running", WAIT, || {
        let list = list_machines(&bus);
        (list.contains(&format!("\"{}\" \"running\"", guest.umid())) && list.contains(&path))
            .then_some(())
    });
    assert_eq!(
        machine_property(&bus, &path, "Pid").unwrap(),
        format!("u {}", guest.pid())
    );
    assert_eq!(
        machine_property(&bus, &path, "Umid").unwrap(),
        format!("s \"{}\"", guest.umid())
    );
    let release = testkit::kernel_release();
    wait_until(&format!("KernelVersion is {release}"), WAIT, || {
        (machine_property(&bus, &path, "KernelVersion").ok()? == format!("s \"{release}\""))
            .then_some(())
    });
    wait_until("Consoles shows con0", WAIT, || {
        machine_property(&bus, &path, "Consoles")
            .ok()?
            .contains("\"con0\" \"fd:0,fd:1\"")
            .then_some(())
    });
    let cmdline = machine_property(&bus, &path, "CommandLine").unwrap();
    assert!(
        cmdline.contains(&format!("\"umid={}\"", guest.umid())),
        "{cmdline}"
    );
    let mem = machine_property(&bus, &path, "MemoryBytes").unwrap();
    let mem: u64 = mem.trim_start_matches("t ").parse().unwrap();
    assert!(mem > 32 << 20 && mem <= 64 << 20, "MemoryBytes {mem}");

    // A hot-added disk shows up in Disks, with PropertiesChanged; a read-only one as such.
    // Only once init runs: mconsole answers before the ubd driver's initcall (`ubd_init`,
    // ubd_kern.c), which registers a disk hot-added before it a second time (6.1.176 and
    // 7.2.12 both log `kobject ... tried to init an initialized object` and may abort).
    guest.wait_for_log("READY", WAIT).unwrap();
    let scratch = testkit::short_tempdir("ud-img");
    let disk = image(scratch.path(), "disk.img");
    let ro_disk = image(scratch.path(), "ro.img");
    machine_call(&bus, &path, "Config", &["ss", "ubd1", &disk]).unwrap();
    machine_call(&bus, &path, "Config", &["ss", "ubd2r", &ro_disk]).unwrap();
    let disks = machine_property(&bus, &path, "Disks").unwrap();
    assert!(
        disks.contains(&format!("\"ubd1\" \"{disk}\" \"\" false")),
        "{disks}"
    );
    assert!(
        disks.contains(&format!("\"ubd2\" \"{ro_disk}\" \"\" true")),
        "{disks}"
    );
    monitor.wait_for(&["PropertiesChanged", &path, "Disks", &disk]);
    let q = machine_call(&bus, &path, "QueryConfig", &["s", "ubd1"]).unwrap();
    assert!(q.contains(&disk), "{q}");
    machine_call(&bus, &path, "Remove", &["s", "ubd2"]).unwrap();
    assert!(
        !machine_property(&bus, &path, "Disks")
            .unwrap()
            .contains("ubd2")
    );

    // Pause and Resume, each with PropertiesChanged.
    machine_call(&bus, &path, "Pause", &[]).unwrap();
    assert_eq!(
        machine_property(&bus, &path, "State").unwrap(),
        "s \"paused\""
    );
    monitor.wait_for(&["PropertiesChanged", &path, "'State': <'paused'>"]);
    machine_call(&bus, &path, "Resume", &[]).unwrap();
    assert_eq!(
        machine_property(&bus, &path, "State").unwrap(),
        "s \"running\""
    );
    monitor.wait_for(&["PropertiesChanged", &path, "'State': <'running'>"]);
    // Resume of a running machine succeeds and changes nothing.
    machine_call(&bus, &path, "Resume", &[]).unwrap();
    assert_eq!(
        machine_property(&bus, &path, "State").unwrap(),
        "s \"running\""
    );

    let sysrq = machine_call(&bus, &path, "SysRq", &["s", "m"]).unwrap();
    assert!(sysrq.contains("Show Memory"), "{sysrq}");
    let meminfo = machine_call(&bus, &path, "Proc", &["s", "meminfo"]).unwrap();
    assert!(meminfo.contains("MemTotal:"), "{meminfo}");
    let version = machine_call(&bus, &path, "Version", &[]).unwrap();
    assert!(version.contains(testkit::kernel_release()), "{version}");
    let err = gdbus_call(&bus, &path, "org.umlkit.uml1.Machine.SysRq", &["'mm'"]).unwrap_err();
    assert!(
        err.contains("org.umlkit.uml1.Error.InvalidArgument"),
        "{err}"
    );
    machine_call(&bus, &path, "Log", &["s", "hello from the bus"]).unwrap();

    let err = gdbus_call(
        &bus,
        MANAGER,
        "org.umlkit.uml1.Manager.GetMachine",
        &["no-such-guest"],
    )
    .unwrap_err();
    assert!(err.contains("org.umlkit.uml1.Error.NoSuchMachine"), "{err}");
    assert!(
        err.contains(guest.umid()),
        "the error names the known machines: {err}"
    );
    let got = busctl(
        &bus,
        &[
            "call",
            NAME,
            MANAGER,
            MANAGER_IFACE,
            "GetMachine",
            "s",
            guest.umid(),
        ],
    )
    .unwrap();
    assert_eq!(got.trim(), format!("o \"{path}\""));
}

#[test]
fn launch_starts_a_guest_that_boots_notifies_and_runs() {
    let bus = Bus::start();
    let dir = UmlDir::new();
    let _umld = Umld::start_with(&bus, dir.path(), &["--keep-exited", "1"]);
    let monitor = Monitor::start(&bus);
    let scratch = testkit::short_tempdir("ud-l");
    let init = write_init(scratch.path(), "hello desktop");
    let umid = testkit::unique_umid("ud-launch");
    let path = launch(&bus, &testkit::guest_argv("64M", &init), &umid).unwrap();
    assert_eq!(path, path_of(&umid));
    dir.remember();

    // Announced in state starting, then MconsoleReady (running), then Booted once init runs.
    monitor.wait_for(&["InterfacesAdded", &path, "'State': <'starting'>"]);
    monitor.wait_for(&["MachineNew", &umid]);
    monitor.wait_for(&[&path, "org.umlkit.uml1.Machine.MconsoleReady"]);
    monitor.wait_for(&[&path, "org.umlkit.uml1.Machine.Booted"]);
    wait_until("the launched guest is running", WAIT, || {
        (machine_property(&bus, &path, "State").ok()? == "s \"running\"").then_some(())
    });
    assert_eq!(
        machine_property(&bus, &path, "UserspaceUp").unwrap(),
        "b true"
    );
    monitor.wait_for(&[&path, "org.umlkit.uml1.Machine.Notified", "hello desktop"]);
    let ready_at = monitor.position(&[&path, "Machine.MconsoleReady"]).unwrap();
    let booted_at = monitor.position(&[&path, "Machine.Booted"]).unwrap();
    assert!(ready_at < booted_at, "{}", monitor.text());
    dir.remember();
    let pid = machine_property(&bus, &path, "Pid").unwrap();
    let pid: u32 = pid.trim_start_matches("u ").parse().unwrap();
    assert!(dir.kernel_pids().contains(&pid));

    machine_call(&bus, &path, "Shutdown", &["u", "1"]).unwrap();
    monitor.wait_for(&[&path, "org.umlkit.uml1.Machine.Exited"]);
    monitor.wait_for(&["MachineRemoved", &umid]);
    assert!(!list_machines(&bus).contains(&umid));
}

#[test]
fn launch_with_an_invalid_argument_is_refused_naming_it() {
    let bus = Bus::start();
    let dir = UmlDir::new();
    let _umld = Umld::start(&bus, dir.path());
    let err = gdbus_call(
        &bus,
        MANAGER,
        "org.umlkit.uml1.Manager.Launch",
        &["{'kernel_args': <['mem=64M', 'ubd1x=/x']>}"],
    )
    .unwrap_err();
    assert!(
        err.contains("org.umlkit.uml1.Error.InvalidArgument"),
        "{err}"
    );
    assert!(err.contains("ubd1x=/x"), "{err}");
    assert_eq!(list_machines(&bus).trim(), "a(ssso) 0");
    assert!(dir.kernel_pids().is_empty(), "no kernel was started");

    let err = gdbus_call(
        &bus,
        MANAGER,
        "org.umlkit.uml1.Manager.Launch",
        &["{'colour': <'red'>}"],
    )
    .unwrap_err();
    assert!(
        err.contains("org.umlkit.uml1.Error.InvalidArgument"),
        "{err}"
    );
    assert!(err.contains("colour"), "{err}");
}

#[test]
fn panicking_guest_is_reported_crashed_then_exited_and_removed() {
    let bus = Bus::start();
    let dir = UmlDir::new();
    let _umld = Umld::start_with(&bus, dir.path(), &["--keep-exited", "2"]);
    let monitor = Monitor::start(&bus);
    let umid = testkit::unique_umid("ud-panic");
    // init exits at once: "Attempted to kill init!"
    let path = launch(
        &bus,
        &testkit::guest_argv("64M", std::path::Path::new("/bin/true")),
        &umid,
    )
    .unwrap();
    dir.remember();
    let panicked = monitor.wait_for(&[&path, "org.umlkit.uml1.Machine.Panicked"]);
    assert!(panicked.contains("Attempted to kill init"), "{panicked}");
    monitor.wait_for(&[&path, "PropertiesChanged", "'State': <'crashed'>"]);
    monitor.wait_for(&[&path, "org.umlkit.uml1.Machine.Exited"]);
    // Its last state stays readable for a while.
    assert_eq!(
        machine_property(&bus, &path, "State").unwrap(),
        "s \"crashed\""
    );
    assert_eq!(
        machine_property(&bus, &path, "UserspaceUp").unwrap(),
        "b false"
    );
    monitor.wait_for(&["MachineRemoved", &umid]);
    // Its init ran only to die at once: the guest never booted.
    assert!(
        monitor.find(&[&path, "Machine.Booted"]).is_none(),
        "Booted for a guest that panicked:\n{}",
        monitor.text()
    );
    let panic_at = monitor.position(&[&path, "Panicked"]).unwrap();
    let exit_at = monitor.position(&[&path, "Machine.Exited"]).unwrap();
    assert!(
        panic_at < exit_at,
        "Panicked came after Exited:\n{}",
        monitor.text()
    );
    assert!(!list_machines(&bus).contains(&umid));
}

#[test]
fn killed_guest_emits_exited_stays_readable_then_is_removed() {
    let bus = Bus::start();
    let dir = UmlDir::new();
    let _umld = Umld::start_with(&bus, dir.path(), &["--keep-exited", "2"]);
    let monitor = Monitor::start(&bus);
    let mut guest = GuestBuilder::new("ud-kill")
        .uml_dir(dir.path())
        .boot()
        .unwrap();
    let path = path_of(guest.umid());
    monitor.wait_for(&["MachineNew", guest.umid()]);
    guest.kill();
    let exited = monitor.wait_for(&[&path, "org.umlkit.uml1.Machine.Exited"]);
    assert!(
        exited.contains("(-1,)"),
        "status of a guest umld did not start: {exited}"
    );
    let gone_at = std::time::Instant::now();
    // Right after the exit: the last state and exit status, and it is still listed.
    assert_eq!(
        machine_property(&bus, &path, "State").unwrap(),
        "s \"exited\""
    );
    assert_eq!(machine_property(&bus, &path, "ExitStatus").unwrap(), "i -1");
    assert!(list_machines(&bus).contains("\"exited\""));
    let err = gdbus_call(&bus, &path, "org.umlkit.uml1.Machine.Version", &[]).unwrap_err();
    assert!(err.contains("org.umlkit.uml1.Error.NotRunning"), "{err}");
    monitor.wait_for(&["MachineRemoved", guest.umid(), &path]);
    let kept = gone_at.elapsed();
    assert!(
        kept > Duration::from_millis(1500) && kept < Duration::from_secs(5),
        "kept {kept:?} with --keep-exited 2"
    );
    monitor.wait_for(&["InterfacesRemoved", &path]);
    assert!(!list_machines(&bus).contains(guest.umid()));
    assert!(
        machine_property(&bus, &path, "State").is_err(),
        "the object is gone"
    );
}

#[test]
fn restarted_service_adopts_every_running_guest_once() {
    let bus = Bus::start();
    let dir = UmlDir::new();
    let mut umld = Umld::start(&bus, dir.path());
    let outside = GuestBuilder::new("ud-re")
        .uml_dir(dir.path())
        .boot()
        .unwrap();
    let scratch = testkit::short_tempdir("ud-r");
    let init = write_init(scratch.path(), "up");
    let umid = testkit::unique_umid("ud-relaunch");
    let launched = launch(&bus, &testkit::guest_argv("64M", &init), &umid).unwrap();
    dir.remember();
    wait_until("the launched guest runs", WAIT, || {
        (machine_property(&bus, &launched, "State").ok()? == "s \"running\"").then_some(())
    });
    dir.remember();

    umld.stop();
    let umld2 = Umld::start(&bus, dir.path());
    assert_ne!(umld2.pid(), 0);
    let list = wait_until("both guests are listed again", WAIT, || {
        let list = list_machines(&bus);
        (list.contains(&umid) && list.contains(outside.umid())).then_some(list)
    });
    assert!(list.starts_with("a(ssso) 2 "), "{list}");
    assert_eq!(list.matches(&format!("\"{umid}\"")).count(), 1, "{list}");
    assert_eq!(
        list.matches(&format!("\"{launched}\"")).count(),
        1,
        "{list}"
    );
    // The machine launched by the old service is fully usable.
    let version = machine_call(&bus, &launched, "Version", &[]).unwrap();
    assert!(version.contains(testkit::kernel_release()), "{version}");
    // A rescan later does not add it twice.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(list_machines(&bus).starts_with("a(ssso) 2 "));
}

#[test]
fn stopped_guest_does_not_block_calls_to_another_machine() {
    let bus = Bus::start();
    let dir = UmlDir::new();
    let _umld = Umld::start_with(&bus, dir.path(), &["--mconsole-timeout-ms", "3000"]);
    let frozen = GuestBuilder::new("ud-frz")
        .uml_dir(dir.path())
        .boot()
        .unwrap();
    let lively = GuestBuilder::new("ud-liv")
        .uml_dir(dir.path())
        .boot()
        .unwrap();
    let frozen_path = path_of(frozen.umid());
    let lively_path = path_of(lively.umid());
    for p in [&frozen_path, &lively_path] {
        wait_until("both machines run", WAIT, || {
            (machine_property(&bus, p, "State").ok()? == "s \"running\"").then_some(())
        });
    }
    struct Continue(i32);
    impl Drop for Continue {
        fn drop(&mut self) {
            // SAFETY: kill(2) only sends SIGCONT to the test's own guest.
            unsafe {
                libc::kill(-self.0, libc::SIGCONT);
            }
        }
    }
    // SAFETY: kill(2) only sends SIGSTOP to the test's own guest's process group.
    unsafe {
        libc::kill(-(frozen.pid() as i32), libc::SIGSTOP);
    }
    let _resume = Continue(frozen.pid() as i32);

    let frozen_call = {
        let address = bus.address.clone();
        let path = frozen_path.clone();
        std::thread::spawn(move || {
            std::process::Command::new("gdbus")
                .args(["call", "--address", &address, "--dest", NAME])
                .args(["--object-path", &path])
                .args(["--method", "org.umlkit.uml1.Machine.Version"])
                .output()
                .unwrap()
        })
    };
    // Make sure the frozen call is on its way before asking the other machine.
    std::thread::sleep(Duration::from_millis(300));
    let version = machine_call(&bus, &lively_path, "Version", &[]).unwrap();
    assert!(version.contains(testkit::kernel_release()), "{version}");
    let props = machine_property(&bus, &frozen_path, "State").unwrap();
    assert_eq!(
        props, "s \"running\"",
        "properties of the frozen machine still answer"
    );
    assert!(
        !frozen_call.is_finished(),
        "the call to the frozen guest should still be waiting for its deadline"
    );
    let out = frozen_call.join().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("org.umlkit.uml1.Error.GuestNotResponding"),
        "{err}"
    );
    assert!(err.contains(frozen.umid()), "{err}");
}

#[test]
fn service_starts_by_dbus_activation_from_its_service_file() {
    let services = testkit::short_tempdir("ud-svc");
    let dir = UmlDir::new();
    let notify = services.path().join("umld.notify");
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../packaging/dbus/org.umlkit.uml1.service"
    ))
    .unwrap();
    assert!(shipped.contains("Name=org.umlkit.uml1\n"), "{shipped}");
    assert!(shipped.contains("Exec=/usr/bin/umld\n"), "{shipped}");
    assert!(
        shipped.contains("SystemdService=umld.service\n"),
        "{shipped}"
    );
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../packaging/systemd/umld.service"
    ))
    .unwrap();
    assert!(unit.contains("Type=dbus\n") && unit.contains("BusName=org.umlkit.uml1\n"));
    // The shipped file with the binary under test in place of /usr/bin/umld.
    let exec = format!(
        "Exec={} --uml-dir {} --notify-socket {}\n",
        env!("CARGO_BIN_EXE_umld"),
        dir.path().display(),
        notify.display()
    );
    std::fs::write(
        services.path().join("org.umlkit.uml1.service"),
        shipped.replace("Exec=/usr/bin/umld\n", &exec),
    )
    .unwrap();
    let bus = Bus::builder().servicedir(services.path()).start();
    let guest = GuestBuilder::new("ud-act")
        .uml_dir(dir.path())
        .boot()
        .unwrap();

    struct KillPid(i32);
    impl Drop for KillPid {
        fn drop(&mut self) {
            if self.0 > 1 {
                // SAFETY: kill(2) only signals the umld the bus activated for this test.
                unsafe {
                    libc::kill(self.0, libc::SIGKILL);
                }
            }
        }
    }
    // The first call activates the service.
    let list = busctl(
        &bus,
        &["call", NAME, MANAGER, MANAGER_IFACE, "ListMachines"],
    )
    .unwrap();
    let pid = bus.owner_pid(NAME).unwrap();
    let _umld = KillPid(pid);
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert!(exe.ends_with("umld"), "{}", exe.display());
    assert!(list.contains(guest.umid()), "{list}");
}

/// An interface element without comments and with whitespace collapsed.
fn interface_structure(xml: &str, name: &str) -> String {
    let start = xml
        .find(&format!("<interface name=\"{name}\">"))
        .unwrap_or_else(|| panic!("no interface {name} in:\n{xml}"));
    let end = start + xml[start..].find("</interface>").unwrap() + "</interface>".len();
    let mut text = &xml[start..end];
    let mut out = String::new();
    while let Some(c) = text.find("<!--") {
        out.push_str(&text[..c]);
        let close = text[c..].find("-->").unwrap();
        text = &text[c + close + 3..];
    }
    out.push_str(text);
    out.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace("> <", "><")
}

#[test]
fn introspection_matches_the_checked_in_interface_files() {
    let bus = Bus::start();
    let dir = UmlDir::new();
    let _umld = Umld::start(&bus, dir.path());
    let guest = GuestBuilder::new("ud-xml")
        .uml_dir(dir.path())
        .boot()
        .unwrap();
    let path = path_of(guest.umid());
    wait_until("the machine object exists", WAIT, || {
        machine_property(&bus, &path, "Umid").ok()
    });
    for (name, object) in [("Manager", MANAGER.to_owned()), ("Machine", path)] {
        let iface = format!("org.umlkit.uml1.{name}");
        let file = std::fs::read_to_string(format!(
            "{}/interfaces/{iface}.xml",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let live = busctl(&bus, &["introspect", "--xml-interface", NAME, &object]).unwrap();
        assert_eq!(
            interface_structure(&live, &iface),
            interface_structure(&file, &iface),
            "interfaces/{iface}.xml differs from what the service introspects"
        );
        // Every member is documented in the checked-in file.
        let members = file.matches("<method ").count()
            + file.matches("<signal ").count()
            + file.matches("<property ").count();
        let docs = file.matches("<!--").count() - 1;
        assert_eq!(docs, members, "every member of {iface} has documentation");
    }
}

#[test]
fn instance_owned_by_another_user_is_not_adopted() {
    use std::os::unix::fs::MetadataExt;
    let dir = UmlDir::new();
    let theirs = GuestBuilder::new("ud-theirs")
        .uml_dir(dir.path())
        .boot()
        .unwrap();
    let ours = GuestBuilder::new("ud-ours")
        .uml_dir(dir.path())
        .boot()
        .unwrap();
    let instance = theirs.instance_dir();
    let me = std::fs::metadata(ours.instance_dir()).unwrap().uid();
    let other = if me == 65534 { 65533 } else { 65534 };
    std::os::unix::fs::chown(&instance, Some(other), None).unwrap();
    let bus = Bus::start();
    let _umld = Umld::start(&bus, dir.path());
    wait_until("our guest is listed", WAIT, || {
        list_machines(&bus).contains(ours.umid()).then_some(())
    });
    // A later rescan does not pick it up either.
    std::thread::sleep(Duration::from_millis(1500));
    let list = list_machines(&bus);
    assert!(!list.contains(theirs.umid()), "{list}");
    let err = gdbus_call(
        &bus,
        MANAGER,
        "org.umlkit.uml1.Manager.GetMachine",
        &[theirs.umid()],
    )
    .unwrap_err();
    assert!(err.contains("NoSuchMachine"), "{err}");
}

/// A kernel before 7.0 on a host with AMX: it boots, then kills its first process (see
/// `uml::kernel::diagnosis`). `None` elsewhere.
fn kernel_that_cannot_run_init_here() -> Option<std::path::PathBuf> {
    let amx = testkit::host_has_amx();
    let kernel = uml::kernel::packaged()?;
    let old = uml::kernel::Profile::read(&kernel)
        .is_ok_and(|p| p.version < uml::kernel::Version::new(7, 0, 0));
    (amx && old).then_some(kernel)
}

#[test]
fn launch_of_a_kernel_that_cannot_run_here_names_the_cause_in_panicked() {
    let Some(kernel) = kernel_that_cannot_run_init_here() else {
        eprintln!(
            "checked nothing: the real failure needs a host with AMX and a kernel before 7.0 as `linux` on PATH (the diagnosis itself is checked against a recorded boot log in uml::kernel::diagnosis)"
        );
        return;
    };
    let bus = Bus::start();
    let dir = UmlDir::new();
    let _umld = Umld::start_with(
        &bus,
        dir.path(),
        &["--kernel", kernel.to_str().unwrap(), "--keep-exited", "0"],
    );
    let monitor = Monitor::start(&bus);
    let scratch = testkit::short_tempdir("ud-x");
    let init = write_init(scratch.path(), "never");
    let umid = testkit::unique_umid("ud-xsave");
    let path = launch(&bus, &testkit::guest_argv("64M", &init), &umid).unwrap();
    dir.remember();
    let panicked = monitor.wait_for(&[&path, "org.umlkit.uml1.Machine.Panicked"]);
    assert!(panicked.contains("Attempted to kill init"), "{panicked}");
    assert!(panicked.contains("XSAVE"), "{panicked}");
    assert!(
        panicked.contains("ptrace set fp regs failed, errno = 14"),
        "{panicked}"
    );
    assert!(panicked.contains("uml kernel build"), "{panicked}");
    monitor.wait_for(&["MachineRemoved", &umid]);
}

fn state(bus: &Bus, path: &str) -> String {
    machine_property(bus, path, "State").unwrap_or_default()
}

fn wait_state(bus: &Bus, path: &str, want: &str, within: Duration) {
    let want = format!("s \"{want}\"");
    wait_until(&format!("{path} is {want}"), within, || {
        (state(bus, path) == want).then_some(())
    });
}

/// The guest's mconsole, as another tool (uml pause, uml_mconsole) would use it.
fn outside_client(guest: &testkit::Guest) -> uml::mconsole::Client {
    uml::instance::find(guest.uml_dir(), guest.umid())
        .unwrap()
        .client(Duration::from_secs(3))
        .unwrap()
}

#[test]
fn state_follows_pauses_by_anyone_and_is_true_right_after_a_restart() {
    let bus = Bus::start();
    let dir = UmlDir::new();
    let mut umld = Umld::start(&bus, dir.path());
    let guest = GuestBuilder::new("ud-st")
        .uml_dir(dir.path())
        .boot()
        .unwrap();
    let path = path_of(guest.umid());
    wait_state(&bus, &path, "running", WAIT);

    // Paused by another tool: State follows within a second or two.
    let other = outside_client(&guest);
    other.stop().unwrap();
    wait_state(&bus, &path, "paused", Duration::from_secs(3));
    // Pause of a paused machine succeeds and changes nothing.
    machine_call(&bus, &path, "Pause", &[]).unwrap();
    assert_eq!(state(&bus, &path), "s \"paused\"");

    // A restarted service sees it paused from the first look.
    umld.stop();
    let _umld2 = Umld::start(&bus, dir.path());
    let first = wait_until("the machine is adopted again", WAIT, || {
        machine_property(&bus, &path, "State").ok()
    });
    assert_eq!(first, "s \"paused\"", "state right after the restart");
    machine_call(&bus, &path, "Resume", &[]).unwrap();
    assert_eq!(state(&bus, &path), "s \"running\"");
    machine_call(&bus, &path, "Resume", &[]).unwrap();
    assert_eq!(state(&bus, &path), "s \"running\"");

    // Paused through D-Bus, resumed by another tool: State follows too.
    machine_call(&bus, &path, "Pause", &[]).unwrap();
    assert_eq!(state(&bus, &path), "s \"paused\"");
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(
        state(&bus, &path),
        "s \"paused\"",
        "the sync keeps a real pause"
    );
    other.go().unwrap();
    wait_state(&bus, &path, "running", Duration::from_secs(3));
}

#[test]
fn shutdown_returns_at_once_and_a_reboot_instead_of_power_off_is_reported() {
    let bus = Bus::start();
    let dir = UmlDir::new();
    let _umld = Umld::start(&bus, dir.path());
    let monitor = Monitor::start(&bus);
    let scratch = testkit::short_tempdir("ud-sd");
    // A shell as init: the kernel's ctrl-alt-del restarts it (C_A_D stays on).
    let init = write_init(scratch.path(), "up");
    let umid = testkit::unique_umid("ud-sd");
    let path = launch(&bus, &testkit::guest_argv("64M", &init), &umid).unwrap();
    dir.remember();
    wait_state(&bus, &path, "running", WAIT);
    monitor.wait_for(&[&path, "org.umlkit.uml1.Machine.Notified", "up"]);

    let started = std::time::Instant::now();
    machine_call(&bus, &path, "Shutdown", &["u", "40"]).unwrap();
    let took = started.elapsed();
    eprintln!("Shutdown(40) returned in {took:?}");
    assert!(took < Duration::from_secs(1), "Shutdown took {took:?}");
    assert_eq!(state(&bus, &path), "s \"stopping\"");
    let rebooted = monitor.wait_for(&[&path, "org.umlkit.uml1.Machine.Rebooted"]);
    assert!(rebooted.contains("'shutdown'"), "{rebooted}");
    monitor.wait_for(&[&path, "org.umlkit.uml1.Machine.Exited"]);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the reboot was halted, not waited out: {:?}",
        started.elapsed()
    );
}

#[test]
fn object_manager_lists_only_machines_with_every_property_and_the_session_ends_quietly() {
    let bus = Bus::start();
    let dir = UmlDir::new();
    let mut umld = Umld::start_logged(&bus, dir.path());
    let guest = GuestBuilder::new("ud-om")
        .uml_dir(dir.path())
        .boot()
        .unwrap();
    let path = path_of(guest.umid());
    wait_state(&bus, &path, "running", WAIT);
    let objects = gdbus_call(
        &bus,
        MANAGER,
        "org.freedesktop.DBus.ObjectManager.GetManagedObjects",
        &[],
    )
    .unwrap();
    assert_eq!(
        objects.matches("objectpath '").count(),
        1,
        "one object, the machine: {objects}"
    );
    assert!(
        objects.contains(&format!("objectpath '{path}'")),
        "{objects}"
    );
    assert!(
        !objects.contains(": {}"),
        "an object without interfaces: {objects}"
    );
    // Every property the interface declares, as Properties.GetAll gives them.
    let xml = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/interfaces/org.umlkit.uml1.Machine.xml"
    ))
    .unwrap();
    for line in xml.lines().filter(|l| l.contains("<property ")) {
        let name = line
            .split("name=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert!(
            objects.contains(&format!("'{name}': <")),
            "{name} missing: {objects}"
        );
    }
    assert!(objects.contains("'State': <'running'>"), "{objects}");

    // Every method's out-arguments are named.
    let live = busctl(&bus, &["introspect", "--xml-interface", NAME, &path]).unwrap();
    let manager = busctl(&bus, &["introspect", "--xml-interface", NAME, MANAGER]).unwrap();
    for (text, iface) in [(&live, MACHINE_IFACE), (&manager, MANAGER_IFACE)] {
        let ours = interface_structure(text, iface);
        assert!(!ours.contains("<arg type="), "an unnamed argument: {ours}");
    }

    // The session ends (the bus goes away): umld exits, with a plain log and no warning.
    drop(bus);
    assert!(
        umld.wait_exit(Duration::from_secs(10)),
        "umld outlived its bus"
    );
    let log = umld.log();
    assert!(log.contains("umld is serving"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a log that is not a terminal: {log}"
    );
    assert!(
        !log.contains("WARN"),
        "a warning at a normal session end: {log}"
    );
}

/// The repository's GIO client (python3-gi), `clients/umld-gio.py`, on the test bus.
fn gio(bus: &Bus, args: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new("/usr/bin/python3");
    c.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/clients/umld-gio.py"))
        .args(["--address", &bus.address])
        .args(args)
        .stdin(std::process::Stdio::null());
    c
}

fn gio_ok(bus: &Bus, args: &[&str]) -> String {
    let out = testkit::output_within(
        gio(bus, args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
        Duration::from_secs(30),
        "the GIO client",
    );
    assert!(
        out.status.success(),
        "{}",
        testkit::show_output("umld-gio.py", &out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An init that tells it started, then talks on tty1 (con1): prints console-ok every second
/// and answers each line it reads with got:LINE.
fn write_console_init(dir: &std::path::Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("init");
    std::fs::write(
        &path,
        "#!/bin/sh\nmount -t proc proc /proc\nprintf 'init-started' > /proc/mconsole\n\
         mount -t tmpfs t /tmp\nmknod /tmp/tty1 c 4 1\nexec 3<>/tmp/tty1\n\
         (while :; do echo console-ok >&3; sleep 1; done) &\n\
         while read -r line <&3; do echo \"got:$line\" >&3; done\nwhile :; do sleep 1; done\n",
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn gio_client_sees_the_boot_lists_pauses_and_talks_on_a_console() {
    use std::io::{BufRead, BufReader};
    let bus = Bus::start();
    let dir = UmlDir::new();
    let _umld = Umld::start(&bus, dir.path());
    let umid = testkit::unique_umid("ud-gio");
    let mut watch = gio(&bus, &["watch", "--until", &format!("Booted:{umid}")])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    let _watch = Reap(watch);
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains("Watching"), "{first}");

    let scratch = testkit::short_tempdir("ud-gio");
    let init = write_console_init(scratch.path());
    let mut args = testkit::guest_argv("64M", &init);
    args.push("con1=pts".into());
    let path = launch(&bus, &args, &umid).unwrap();
    dir.remember();

    // The client sees the boot: MconsoleReady, then Booted; init's first words around it.
    let mut events = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let done = line.contains("\"Booted\"");
        events.push(line);
        if done {
            break;
        }
    }
    let text = events.join("\n");
    let at = |events: &[String], what: &str| -> Option<f64> {
        let line = events.iter().find(|l| l.contains(what))?;
        let t = line.rsplit("\"t\": ").next()?.trim_end_matches('}');
        t.parse().ok()
    };
    let ready = at(&events, "\"MconsoleReady\"").unwrap_or_else(|| panic!("{text}"));
    let booted = at(&events, "\"Booted\"").unwrap_or_else(|| panic!("{text}"));
    assert!(ready <= booted, "{text}");
    // init's message may come just before or after Booted; wait for it to report the gap.
    let mut init_at = at(&events, "init-started");
    if init_at.is_none() {
        for line in lines.by_ref() {
            let line = line.unwrap();
            if line.contains("init-started") {
                events.push(line);
                init_at = at(&events, "init-started");
                break;
            }
        }
    }
    let init_at = init_at.unwrap();
    eprintln!(
        "figure: GIO client saw Booted {:+.0} ms after init's first message (MconsoleReady {:+.0} ms)",
        (booted - init_at) * 1000.0,
        (ready - init_at) * 1000.0
    );

    // Listed with state and memory.
    let listed = wait_until("the GIO client lists it with its memory", WAIT, || {
        let out = gio_ok(&bus, &["list"]);
        (out.contains(&format!("\"Umid\": \"{umid}\""))
            && out.contains("\"State\": \"running\"")
            && !out.contains("\"MemoryBytes\": 0,")
            && out.contains("\"con1\": \"pts:/dev/pts/"))
        .then_some(out)
    });
    assert_eq!(listed.lines().count(), 1, "{listed}");
    assert!(listed.contains("\"con1\": \"pts:/dev/pts/"), "{listed}");
    assert!(
        !listed.contains("null"),
        "a line on no channel is listed: {listed}"
    );

    gio_ok(&bus, &["pause", &umid]);
    assert_eq!(state(&bus, &path), "s \"paused\"");
    gio_ok(&bus, &["pause", &umid]);
    gio_ok(&bus, &["resume", &umid]);
    assert_eq!(state(&bus, &path), "s \"running\"");

    // A console through OpenConsole: the guest's words, and an answer to ours.
    let talk = gio_ok(
        &bus,
        &[
            "console",
            &umid,
            "con1",
            "--send",
            "hello",
            "--expect",
            "console-ok",
            "--expect",
            "got:hello",
        ],
    );
    assert!(talk.contains("got:hello"), "{talk}");
    // A line that is not on a pty is refused with the way to put it on one.
    let out = gio(&bus, &["console", &umid, "con0"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("org.umlkit.uml1.Error.InvalidArgument") && err.contains("pts"),
        "{err}"
    );
}

#[test]
fn typed_launch_runs_uml_runs_guest_with_disks_memory_and_a_boot_log() {
    let bus = Bus::start();
    let dir = UmlDir::new();
    let _umld = Umld::start(&bus, dir.path());
    let monitor = Monitor::start(&bus);
    let scratch = testkit::short_tempdir("ud-ty");
    let disk = image(scratch.path(), "data.img");

    // A relative disk path is refused, and nothing starts.
    let err = gdbus_call(
        &bus,
        MANAGER,
        "org.umlkit.uml1.Manager.Launch",
        &["{'disks': <['data.img']>}"],
    )
    .unwrap_err();
    assert!(
        err.contains("org.umlkit.uml1.Error.InvalidArgument"),
        "{err}"
    );
    assert!(err.contains("relative"), "{err}");
    let err = gdbus_call(
        &bus,
        MANAGER,
        "org.umlkit.uml1.Manager.Launch",
        &["{'mem': <'64M'>, 'kernel_args': <['mem=64M']>}"],
    )
    .unwrap_err();
    assert!(err.contains("kernel_args"), "{err}");
    assert!(dir.kernel_pids().is_empty(), "no kernel was started");

    let umid = testkit::unique_umid("ud-typed");
    let started = std::time::Instant::now();
    let out = gdbus_call(
        &bus,
        MANAGER,
        "org.umlkit.uml1.Manager.Launch",
        &[&format!(
            "{{'umid': <'{umid}'>, 'mem': <'96M'>, 'disks': <['{disk}:ro']>, \
             'command': <['/bin/sh', '-c', 'echo typed-out; printf typed > /proc/mconsole; sleep 600']>}}"
        )],
    )
    .unwrap();
    let took = started.elapsed();
    eprintln!("Launch returned in {took:?} (gdbus included)");
    assert!(took < Duration::from_secs(1), "Launch took {took:?}");
    let path = path_of(&umid);
    assert!(out.contains(&path), "{out}");
    dir.remember();
    monitor.wait_for(&[&path, "org.umlkit.uml1.Machine.Booted"]);
    monitor.wait_for(&[&path, "org.umlkit.uml1.Machine.Notified", "typed"]);
    wait_until("Disks shows the read-only disk", WAIT, || {
        machine_property(&bus, &path, "Disks")
            .ok()?
            .contains(&format!("\"ubd0\" \"{disk}\" \"\" true"))
            .then_some(())
    });
    let mem: u64 = machine_property(&bus, &path, "MemoryBytes")
        .unwrap()
        .trim_start_matches("t ")
        .parse()
        .unwrap();
    assert!(mem > 64 << 20 && mem <= 96 << 20, "MemoryBytes {mem}");
    let log = machine_property(&bus, &path, "BootLog").unwrap();
    let log = log.trim_start_matches("s ").trim_matches('"').to_owned();
    assert!(log.ends_with(&format!("{umid}.log")), "{log}");
    // The command's output (con0) goes there, and the kernel's warnings. The line reaches the
    // host file on the kernel's schedule, which under load may come after the notification.
    wait_until("the command's output in the boot log", WAIT, || {
        std::fs::read_to_string(&log)
            .ok()?
            .contains("typed-out")
            .then_some(())
    });
    machine_call(&bus, &path, "Halt", &[]).unwrap();
    monitor.wait_for(&[&path, "org.umlkit.uml1.Machine.Exited"]);
}

/// Stops the named switch `uml` started in a uml dir, when the test ends (it would otherwise
/// outlive the test by its idle grace).
struct SwitchStop<'a>(&'a Path, &'a Path, &'a str);

impl Drop for SwitchStop<'_> {
    fn drop(&mut self) {
        let _ = std::process::Command::new(self.0)
            .arg("--uml-dir")
            .arg(self.1)
            .args(["switch", "stop", self.2])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

#[test]
fn typed_launch_joins_guests_on_a_named_switch_with_the_transport_the_kernel_has() {
    // The `uml` binary of this workspace, on umld's PATH: umld starts the named switch with it.
    let uml = Path::new(env!("CARGO_BIN_EXE_umld")).with_file_name("uml");
    assert!(
        uml.is_file(),
        "{} is missing: build it (cargo build -p uml)",
        uml.display()
    );
    let bin = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(&uml, bin.path().join("uml")).unwrap();
    let bus = Bus::start();
    let dir = UmlDir::new();
    let _umld = Umld::start_with_path(&bus, dir.path(), bin.path());
    let _switch = SwitchStop(&uml, dir.path(), "lab");
    let monitor = Monitor::start(&bus);

    // A spec the kernel lacks, or a bad one, is refused and nothing starts.
    let err = gdbus_call(
        &bus,
        MANAGER,
        "org.umlkit.uml1.Manager.Launch",
        &["{'net': <['bogus:x']>}"],
    )
    .unwrap_err();
    assert!(
        err.contains("InvalidArgument") && err.contains("net bogus:x"),
        "{err}"
    );
    assert!(dir.kernel_pids().is_empty(), "no kernel was started");

    // The Nth net is ethN in the built-in guest on every kernel (a daemon port on 6.x, a bess
    // port of the vector driver on 7.x).
    let launch = |umid: &str, script: &str| {
        gdbus_call(
            &bus,
            MANAGER,
            "org.umlkit.uml1.Manager.Launch",
            &[&format!(
                "{{'umid': <'{umid}'>, 'mem': <'64M'>, 'net': <['switch:lab']>, \
                 'command': <['/bin/sh', '-c', '{script}']>}}"
            )],
        )
        .unwrap()
    };
    let a = testkit::unique_umid("ud-na");
    let b = testkit::unique_umid("ud-nb");
    launch(
        &a,
        "ip addr add 192.0.2.1/24 dev eth0; ip link set eth0 up; printf a-up > /proc/mconsole; sleep 600",
    );
    dir.remember();
    let path_a = path_of(&a);
    monitor.wait_for(&[&path_a, "org.umlkit.uml1.Machine.Notified", "a-up"]);
    launch(
        &b,
        "ip addr add 192.0.2.2/24 dev eth0; ip link set eth0 up; \
         if ping -c 2 -W 5 192.0.2.1 >/dev/null; then printf ping-ok; else printf ping-failed; fi > /proc/mconsole; sleep 600",
    );
    let path_b = path_of(&b);
    let seen = monitor.wait_for(&[&path_b, "org.umlkit.uml1.Machine.Notified", "ping-"]);
    assert!(seen.contains("ping-ok"), "{seen}");
    // Each guest on one host CPU, the two on different ones where umld may use several.
    let ours = uml::launch::cpus_of(std::process::id()).unwrap();
    let cpus: Vec<Vec<usize>> = [&a, &b]
        .iter()
        .map(|umid| {
            let pid = uml::instance::read_pid_file(&dir.path().join(umid).join("pid")).unwrap();
            uml::launch::cpus_of(pid).unwrap()
        })
        .collect();
    if ours.len() > 1 {
        assert!(
            cpus.iter().all(|c| c.len() == 1) && cpus[0] != cpus[1],
            "guests on CPUs {cpus:?}, umld may use {ours:?}"
        );
    }
    for path in [&path_a, &path_b] {
        machine_call(&bus, path, "Halt", &[]).unwrap();
        monitor.wait_for(&[path, "org.umlkit.uml1.Machine.Exited"]);
    }
}

/// The repository's GJS client, `clients/umld-gjs.js`, on the test bus.
fn gjs(bus: &Bus, args: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new("gjs");
    c.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/clients/umld-gjs.js"))
        .args(["--address", &bus.address])
        .args(args)
        .stdin(std::process::Stdio::null());
    c
}

fn gjs_ok(bus: &Bus, args: &[&str]) -> String {
    let out = testkit::output_within(
        gjs(bus, args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
        Duration::from_secs(30),
        "the GJS client",
    );
    assert!(
        out.status.success(),
        "{}",
        testkit::show_output("umld-gjs.js", &out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn gjs_client_follows_guests_live_pauses_them_and_opens_a_console() {
    if std::process::Command::new("gjs")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("gjs is not installed: scripts/install-deps installs it (Debian package gjs)");
    }
    let bus = Bus::start();
    let dir = UmlDir::new();
    let _umld = Umld::start_with(&bus, dir.path(), &["--keep-exited", "1"]);
    let umid = testkit::unique_umid("ud-gjs");
    let watch = gjs(
        &bus,
        &[
            "watch",
            "--until",
            &format!("Exited:{umid}"),
            "--timeout",
            "60",
        ],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let watch_pid = watch.id();
    let watched = std::thread::spawn(move || watch.wait_with_output().unwrap());
    struct Reap(u32);
    impl Drop for Reap {
        fn drop(&mut self) {
            // SAFETY: kill(2) only signals the gjs watcher this test started.
            unsafe {
                libc::kill(self.0 as i32, libc::SIGKILL);
            }
        }
    }
    let _reap = Reap(watch_pid);
    std::thread::sleep(Duration::from_millis(800)); // gjs starts and subscribes

    let scratch = testkit::short_tempdir("ud-gjs");
    let init = write_console_init(scratch.path());
    let mut args = testkit::guest_argv("64M", &init);
    args.push("con1=pts".into());
    let path = launch(&bus, &args, &umid).unwrap();
    dir.remember();
    wait_until(
        "the GJS client lists it running with its memory",
        WAIT,
        || {
            let out = gjs_ok(&bus, &["list"]);
            (out.contains(&format!("\"Umid\":\"{umid}\""))
                && out.contains("\"State\":\"running\"")
                && !out.contains("\"MemoryBytes\":0,")
                && out.contains("\"UserspaceUp\":true"))
            .then_some(out)
        },
    );
    wait_until("con1 is on a pty", WAIT, || {
        machine_property(&bus, &path, "Consoles")
            .ok()?
            .contains("pts:/dev/pts/")
            .then_some(())
    });
    gjs_ok(&bus, &["pause", &umid]);
    assert_eq!(state(&bus, &path), "s \"paused\"");
    gjs_ok(&bus, &["resume", &umid]);
    assert_eq!(state(&bus, &path), "s \"running\"");
    let talk = gjs_ok(
        &bus,
        &[
            "console",
            &umid,
            "con1",
            "--send",
            "from-gjs",
            "--expect",
            "got:from-gjs",
        ],
    );
    assert!(talk.contains("got:from-gjs"), "{talk}");
    machine_call(&bus, &path, "Halt", &[]).unwrap();

    let out = watched.join().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        testkit::show_output("umld-gjs.js watch", &out)
    );
    let order = [
        "\"signal\":\"Added\"",
        "\"signal\":\"MconsoleReady\"",
        "\"signal\":\"Booted\"",
        "\"signal\":\"State\",\"umid\":\"UMID\",\"args\":[\"paused\"]",
        "\"signal\":\"State\",\"umid\":\"UMID\",\"args\":[\"running\"]",
        "\"signal\":\"Exited\"",
    ];
    let mut from = 0;
    for needle in order {
        let needle = needle.replace("UMID", &umid);
        let at = text[from..]
            .find(&needle)
            .unwrap_or_else(|| panic!("no {needle} after byte {from} in:\n{text}"));
        from += at + needle.len();
    }
}

#[test]
fn guest_whose_watchdog_stops_being_pinged_is_reported_hung() {
    let profile = uml::kernel::Profile::read(&testkit::kernel()).unwrap();
    let harddog = profile
        .config
        .as_ref()
        .and_then(|c| {
            c.get("UML_WATCHDOG")
                .or_else(|| c.get("CONFIG_UML_WATCHDOG"))
        })
        .map(String::as_str);
    assert_eq!(
        harddog,
        Some("y"),
        "the kernel under test has no harddog (CONFIG_UML_WATCHDOG)"
    );
    assert!(
        std::path::Path::new("/usr/bin/uml_watchdog").exists(),
        "harddog runs /usr/bin/uml_watchdog (Debian package uml-utilities)"
    );
    let bus = Bus::start();
    let dir = UmlDir::new();
    let _umld = Umld::start(&bus, dir.path());
    let monitor = Monitor::start(&bus);
    let scratch = testkit::short_tempdir("ud-wd");
    let init = scratch.path().join("init");
    {
        use std::os::unix::fs::PermissionsExt;
        // Opens the harddog device (misc 10:130), pings it once, then never again.
        std::fs::write(
            &init,
            "#!/bin/sh\nmount -t proc proc /proc\nmount -t tmpfs t /tmp\n\
             mknod /tmp/watchdog c 10 130\nexec 3>/tmp/watchdog\nprintf x >&3\n\
             printf 'watchdog-armed' > /proc/mconsole\nwhile :; do sleep 1; done\n",
        )
        .unwrap();
        std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let umid = testkit::unique_umid("ud-hung");
    let path = launch(&bus, &testkit::guest_argv("64M", &init), &umid).unwrap();
    dir.remember();
    monitor.wait_for(&[&path, "org.umlkit.uml1.Machine.Notified", "watchdog-armed"]);
    let armed = std::time::Instant::now();
    // uml_watchdog waits 60 s for a ping before it reports the hang.
    wait_until("the Hung signal", Duration::from_secs(90), || {
        monitor.find(&[&path, "org.umlkit.uml1.Machine.Hung"])
    });
    eprintln!("Hung {:?} after the last ping", armed.elapsed());
    assert!(armed.elapsed() > Duration::from_secs(30));
    machine_call(&bus, &path, "Halt", &[]).unwrap();
    monitor.wait_for(&[&path, "org.umlkit.uml1.Machine.Exited"]);
}

#[test]
fn reset_is_reported_as_a_reboot_and_the_guest_boots_again() {
    let bus = Bus::start();
    let dir = UmlDir::new();
    let _umld = Umld::start(&bus, dir.path());
    let monitor = Monitor::start(&bus);
    let scratch = testkit::short_tempdir("ud-rs");
    let init = write_init(scratch.path(), "up");
    let umid = testkit::unique_umid("ud-reset");
    let path = launch(&bus, &testkit::guest_argv("64M", &init), &umid).unwrap();
    dir.remember();
    monitor.wait_for(&[&path, "org.umlkit.uml1.Machine.Booted"]);
    let pid = machine_property(&bus, &path, "Pid").unwrap();
    machine_call(&bus, &path, "Reset", &[]).unwrap();
    let rebooted = monitor.wait_for(&[&path, "org.umlkit.uml1.Machine.Rebooted"]);
    assert!(rebooted.contains("'reboot'"), "{rebooted}");
    // The same kernel process boots again: userspace comes back, and calls work.
    wait_until("Booted a second time", WAIT, || {
        (monitor.count(&[&path, "org.umlkit.uml1.Machine.Booted"]) == 2).then_some(())
    });
    assert_eq!(machine_property(&bus, &path, "Pid").unwrap(), pid);
    assert_eq!(state(&bus, &path), "s \"running\"");
    let version = machine_call(&bus, &path, "Version", &[]).unwrap();
    assert!(version.contains(testkit::kernel_release()), "{version}");
    machine_call(&bus, &path, "Halt", &[]).unwrap();
    monitor.wait_for(&[&path, "org.umlkit.uml1.Machine.Exited"]);
}

#[test]
fn reboot_of_a_guest_started_outside_is_reported_and_it_boots_again() {
    let bus = Bus::start();
    let dir = UmlDir::new();
    let _umld = Umld::start(&bus, dir.path());
    let monitor = Monitor::start(&bus);
    let guest = GuestBuilder::new("ud-rbo")
        .uml_dir(dir.path())
        .boot()
        .unwrap();
    let path = path_of(guest.umid());
    wait_state(&bus, &path, "running", WAIT);
    wait_until("UserspaceUp", WAIT, || {
        (machine_property(&bus, &path, "UserspaceUp").ok()? == "b true").then_some(())
    });
    let pid = machine_property(&bus, &path, "Pid").unwrap();
    // Not through umld, and the guest reports to no socket of umld's: only its mconsole
    // socket going away and coming back under the same pid tells of the reboot.
    let _ = outside_client(&guest).reboot();
    let rebooted = monitor.wait_for(&[&path, "org.umlkit.uml1.Machine.Rebooted"]);
    assert!(rebooted.contains("'reboot'"), "{rebooted}");
    monitor.wait_for(&[&path, "org.umlkit.uml1.Machine.Booted"]);
    assert_eq!(machine_property(&bus, &path, "Pid").unwrap(), pid);
    assert_eq!(state(&bus, &path), "s \"running\"");
    let version = machine_call(&bus, &path, "Version", &[]).unwrap();
    assert!(version.contains(testkit::kernel_release()), "{version}");
    assert_eq!(
        monitor.count(&[&path, "org.umlkit.uml1.Machine.Rebooted"]),
        1,
        "one reboot, one signal: {}",
        monitor.text()
    );
}

/// The number after `"key":` in a JSON line of a client (Python writes `"k": 1`, GJS `"k":1`).
fn json_number(line: &str, key: &str) -> Option<f64> {
    let rest = line.split(&format!("\"{key}\":")).nth(1)?.trim_start();
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end].trim().parse().ok()
}

/// What a desktop client does with a guest's whole life, through one of the repository's
/// clients (`client` builds its command): a typed Launch that returns at once, a Shutdown that
/// returns at once with State stopping then exited and ExitStatus readable after, and the
/// ObjectManager announcing the machine object (never a bare node) and its removal.
fn client_launches_shuts_down_and_follows_the_object_manager(
    name: &str,
    client: fn(&Bus, &[&str]) -> std::process::Command,
) {
    use std::io::{BufRead, BufReader};
    let bus = Bus::start();
    let dir = UmlDir::new();
    let _umld = Umld::start_with(&bus, dir.path(), &["--keep-exited", "2"]);
    let umid = testkit::unique_umid("ud-cl");
    let path = path_of(&umid);
    let mut watch = client(
        &bus,
        &[
            "watch",
            "--until",
            &format!("InterfacesRemoved:{path}"),
            "--timeout",
            "120",
        ],
    )
    .stdout(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut watch = Reap(watch);
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains("Watching"), "{first}");

    let run = |args: &[&str]| {
        let out = testkit::output_within(
            client(&bus, args)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap(),
            Duration::from_secs(60),
            name,
        );
        assert!(out.status.success(), "{}", testkit::show_output(name, &out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let launched = run(&["launch", "--umid", &umid, "--mem", "96M"]);
    dir.remember();
    assert!(launched.contains(&path), "{launched}");
    let took = json_number(&launched, "seconds").unwrap_or_else(|| panic!("{launched}"));
    eprintln!("{name}: Launch returned in {took:.3} s");
    assert!(took < 1.0, "Launch took {took} s: {launched}");
    wait_state(&bus, &path, "running", WAIT);

    let shut = run(&["shutdown", &umid, "--grace", "3", "--timeout", "50"]);
    let lines_of = |text: &str, what: &str| -> Vec<usize> {
        text.lines()
            .enumerate()
            .filter(|(_, l)| l.contains(what))
            .map(|(i, _)| i)
            .collect()
    };
    let call = shut
        .lines()
        .find(|l| l.contains("\"Shutdown\""))
        .unwrap_or_else(|| panic!("{shut}"));
    let took = json_number(call, "seconds").unwrap_or_else(|| panic!("{shut}"));
    eprintln!("figure: {name}: Shutdown(3) returned in {took:.3} s");
    assert!(took < 1.0, "Shutdown took {took} s: {shut}");
    let stopping = lines_of(&shut, "\"stopping\"");
    let exited = lines_of(&shut, "\"exited\"");
    assert!(
        !stopping.is_empty() && !exited.is_empty() && stopping[0] < exited[0],
        "State stopping, then exited: {shut}"
    );
    let status = shut
        .lines()
        .find(|l| l.contains("\"ExitStatus\""))
        .unwrap_or_else(|| panic!("ExitStatus not read: {shut}"));
    assert!(
        !status.contains("[-1]"),
        "a launched guest's exit status is known: {status}"
    );

    // The watcher saw the object come and go through the ObjectManager, and nothing else.
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        seen.push(line.unwrap());
    }
    let text = seen.join("\n");
    assert!(
        watch.0.wait().unwrap().success(),
        "the watch ended without InterfacesRemoved: {text}"
    );
    let added: Vec<&String> = seen
        .iter()
        .filter(|l| l.contains("\"InterfacesAdded\""))
        .collect();
    assert!(
        added
            .iter()
            .any(|l| l.contains(&path) && l.contains("org.umlkit.uml1.Machine")),
        "{text}"
    );
    for line in &added {
        assert!(
            line.contains("/org/umlkit/uml1/machine/") && line.contains("org.umlkit.uml1.Machine"),
            "an object without the Machine interface: {line}"
        );
    }
    assert!(
        seen.iter()
            .any(|l| l.contains("\"InterfacesRemoved\"") && l.contains(&path)),
        "{text}"
    );
    assert!(
        seen.iter()
            .any(|l| l.contains("\"Removed\"") && l.contains(&path)),
        "{text}"
    );
}

#[test]
fn gio_client_launches_typed_shuts_down_and_follows_the_object_manager() {
    client_launches_shuts_down_and_follows_the_object_manager("umld-gio.py", gio);
}

#[test]
fn gjs_client_launches_typed_shuts_down_and_follows_the_object_manager() {
    client_launches_shuts_down_and_follows_the_object_manager("umld-gjs.js", gjs);
}

#[test]
fn disks_set_up_with_octal_or_letter_units_show_the_unit_the_kernel_reads_and_read_only() {
    let bus = Bus::start();
    let dir = UmlDir::new();
    let _umld = Umld::start(&bus, dir.path());
    let monitor = Monitor::start(&bus);
    let scratch = testkit::short_tempdir("ud-ubd");
    let init = write_init(scratch.path(), "up");
    let octal = image(scratch.path(), "octal.img");
    let letter = image(scratch.path(), "letter.img");
    let mut args = testkit::guest_argv("64M", &init);
    // parse_unit() in ubd_kern.c: 010 is unit 8 (base 0), b is unit 1; r is read-only.
    args.push(format!("ubd010r={octal}"));
    args.push(format!("ubdbr={letter}"));
    let umid = testkit::unique_umid("ud-ubd");
    let path = launch(&bus, &args, &umid).unwrap();
    dir.remember();
    monitor.wait_for(&[&path, "org.umlkit.uml1.Machine.Notified", "up"]);
    let disks = wait_until("Disks shows both disks", WAIT, || {
        let disks = machine_property(&bus, &path, "Disks").ok()?;
        (disks.contains(&octal) && disks.contains(&letter)).then_some(disks)
    });
    assert!(
        disks.contains(&format!("\"ubd8\" \"{octal}\" \"\" true")),
        "{disks}"
    );
    assert!(
        disks.contains(&format!("\"ubd1\" \"{letter}\" \"\" true")),
        "{disks}"
    );
    machine_call(&bus, &path, "Halt", &[]).unwrap();
    monitor.wait_for(&[&path, "org.umlkit.uml1.Machine.Exited"]);
}
