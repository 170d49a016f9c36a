//! `uml check` as a user runs it: the built binary, its output and exit status. Where a message
//! claims what the kernel does, a test boots a real guest with that argument and looks.

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use testkit::GuestBuilder;

/// A finished `uml check` run; on assertion failure the command and its output are printed.
struct Run {
    argv: Vec<String>,
    output: Output,
}

impl Run {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    fn code(&self) -> i32 {
        self.output.status.code().unwrap_or(-1)
    }

    fn context(&self) -> String {
        format!(
            "\ncommand: uml {}\nstatus: {:?}\nstdout:\n{}\nstderr:\n{}",
            self.argv.join(" "),
            self.output.status,
            self.stdout(),
            String::from_utf8_lossy(&self.output.stderr)
        )
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.output.stdout)
            .unwrap_or_else(|e| panic!("not JSON: {e}{}", self.context()))
    }

    /// Findings with this code, from a `--json` run.
    fn findings(&self, code: &str) -> Vec<Value> {
        self.json()["findings"]
            .as_array()
            .unwrap_or_else(|| panic!("no findings array{}", self.context()))
            .iter()
            .filter(|f| f["code"] == code)
            .cloned()
            .collect()
    }

    fn assert_line(&self, needle: &str) {
        assert!(
            self.stdout().lines().any(|l| l.contains(needle)),
            "no output line contains {needle:?}{}",
            self.context()
        );
    }
}

/// Run `uml check` with these options and kernel words; TMPDIR is pointed at /tmp so the
/// memory-file check does not depend on the caller's environment. Without `--kernel` or
/// `--kernel-version` among the options the verdicts are for Debian's 6.1
/// (`--kernel-version 6.1`), whatever kernel this host would run.
fn uml_check(options: &[&str], words: &[&str]) -> Run {
    let mut argv: Vec<String> = vec!["check".into()];
    argv.extend(options.iter().map(|s| (*s).to_owned()));
    if !options.iter().any(|o| o.starts_with("--kernel")) {
        argv.extend(["--kernel-version".to_owned(), "6.1".to_owned()]);
    }
    argv.push("--".into());
    argv.extend(words.iter().map(|s| (*s).to_owned()));
    let output = testkit::output_of(
        Command::new(env!("CARGO_BIN_EXE_uml"))
            .args(&argv)
            .env("TMPDIR", "/tmp")
            .env_remove("UML_DIR"),
        testkit::RUN_TIMEOUT,
    );
    Run { argv, output }
}

/// The words every clean command line here starts with.
const BASE: &[&str] = &[
    "mem=64M",
    "root=/dev/root",
    "rootfstype=hostfs",
    "rootflags=/",
    "con=null",
    "con0=fd:0,fd:1",
    "umid=t1",
];

fn with_base(extra: &[&str]) -> Vec<&'static str> {
    let mut v: Vec<&'static str> = BASE.to_vec();
    for e in extra {
        v.push(Box::leak(e.to_string().into_boxed_str()));
    }
    v
}

#[test]
fn clean_command_line_exits_zero_with_only_notes() {
    let run = uml_check(&[], &with_base(&["ubd1=/dev/null", "noreboot"]));
    assert_eq!(run.code(), 0, "{}", run.context());
    assert!(!run.stdout().contains("error:"), "{}", run.context());
    assert!(!run.stdout().contains("warning:"), "{}", run.context());
    run.assert_line("note: noreboot: stays on the kernel command line");
    run.assert_line("0 errors, 0 warnings");
}

#[test]
fn udb_typo_is_an_error_that_suggests_ubd() {
    let run = uml_check(&["--no-fs"], &with_base(&["udb1=/srv/a.img"]));
    assert_eq!(run.code(), 1, "{}", run.context());
    run.assert_line("error: udb1=/srv/a.img:");
    run.assert_line("did you mean `ubd1=/srv/a.img`?");
}

#[test]
fn ubd_units_are_checked_with_base_zero_parsing() {
    let run = uml_check(
        &["--no-fs", "--json"],
        &with_base(&["ubd010=/a", "ubd16=/b", "ubdq=/c"]),
    );
    assert_eq!(run.code(), 1, "{}", run.context());
    let read_as = run.findings("ubd-unit-read-as");
    assert_eq!(read_as.len(), 1, "{}", run.context());
    assert!(
        read_as[0]["message"]
            .as_str()
            .unwrap()
            .contains("ubd8 (/dev/ubdi)")
    );
    let range = run.findings("ubd-unit");
    assert_eq!(range.len(), 2, "{}", run.context());
    assert_eq!(range[0]["index"], 8);
    assert!(
        range[0]["message"]
            .as_str()
            .unwrap()
            .contains("0-15 or a-p")
    );
}

#[test]
fn ubd_flag_errors_name_the_flag_and_the_accepted_ones() {
    let run = uml_check(
        &["--no-fs"],
        &with_base(&["ubd0x=/a", "ubd1rrrrrrr=/b", "ubd2rs=/c"]),
    );
    assert_eq!(run.code(), 1);
    run.assert_line("error: ubd0x=/a: `x` is not a ubd flag: expected `=` or one of r, s, d, c, t");
    run.assert_line("error: ubd1rrrrrrr=/b: 7 ubd flags given: at most 6");
    assert!(!run.stdout().contains("ubd2rs"), "{}", run.context());
}

#[test]
fn raw_flag_with_a_cow_file_is_refused() {
    let run = uml_check(&["--no-fs", "--json"], &with_base(&["ubd1d=/cow,/back"]));
    assert_eq!(run.code(), 1);
    assert_eq!(
        run.findings("ubd-raw-with-cow").len(),
        1,
        "{}",
        run.context()
    );
}

#[test]
fn missing_images_are_errors_only_with_filesystem_checks() {
    let dir = tempfile::tempdir().unwrap();
    let back = dir.path().join("back.img");
    std::fs::write(&back, b"x").unwrap();
    let missing = format!("ubd1={}/nope.img", dir.path().display());
    let cow = format!("ubd2={}/new.cow,{}", dir.path().display(), back.display());
    let bad_back = format!(
        "ubd3={}/c.cow,{}/gone.img",
        dir.path().display(),
        dir.path().display()
    );
    let words = with_base(&[&missing, &cow, &bad_back]);
    let run = uml_check(&["--json"], &words);
    assert_eq!(run.code(), 1, "{}", run.context());
    assert_eq!(
        run.findings("ubd-missing-file").len(),
        1,
        "{}",
        run.context()
    );
    assert_eq!(
        run.findings("ubd-missing-backing").len(),
        1,
        "{}",
        run.context()
    );
    assert_eq!(
        run.findings("ubd-cow-created").len(),
        2,
        "{}",
        run.context()
    );
    let offline = uml_check(&["--json", "--no-fs"], &words);
    assert_eq!(offline.code(), 0, "{}", offline.context());
}

#[test]
fn duplicate_devices_are_reported() {
    let run = uml_check(
        &["--no-fs", "--json"],
        &with_base(&[
            "ubd1=/a",
            "ubd1=/b",
            "eth0=mcast",
            "eth0=mcast",
            "vec1:transport=tap",
            "vec1:transport=tap",
            "con2=null",
            "con2=pts",
        ]),
    );
    assert_eq!(run.code(), 1);
    let ubd = run.findings("ubd-duplicate");
    assert_eq!(ubd.len(), 1);
    assert!(
        ubd[0]["message"]
            .as_str()
            .unwrap()
            .contains("Device is already configured")
    );
    assert_eq!(run.findings("eth-duplicate").len(), 1);
    assert_eq!(run.findings("vec-duplicate").len(), 1);
    assert_eq!(run.findings("line-duplicate").len(), 1);
}

#[test]
fn eth_transport_problems() {
    let run = uml_check(
        &["--no-fs"],
        &with_base(&[
            "eth0=pcap,eth0",
            "eth1=tunntap",
            "eth2=tuntap,tap0,,,extra",
            "eth3=mcast,zz:1",
            "eth4=mcast,01:00:00:00:00:01",
            "eth5=mcast,00:11:22:33:44:55",
            "eth6=mcast,fe:fd:00:00:00:06",
            "eth7=ucast",
        ]),
    );
    assert_eq!(run.code(), 1);
    run.assert_line("error: eth0=pcap,eth0: transport `pcap` is not built into this 6.1 kernel (no CONFIG_UML_NET_PCAP)");
    run.assert_line("error: eth1=tunntap: unknown transport `tunntap`: the kernel ignores the option without a message");
    run.assert_line("Extra garbage on specification");
    run.assert_line("warning: eth3=mcast,zz:1: `zz:1` is not a MAC");
    run.assert_line(
        "warning: eth4=mcast,01:00:00:00:00:01: `01:00:00:00:00:01` is a multicast address",
    );
    run.assert_line(
        "warning: eth5=mcast,00:11:22:33:44:55: `00:11:22:33:44:55` is not locally administered",
    );
    assert!(!run.stdout().contains("eth6="), "{}", run.context());
    run.assert_line("error: eth7=ucast: ucast needs the peer's address");
}

#[test]
fn daemon_socket_must_exist_and_fit() {
    let long = format!("eth0=daemon,,unix,/tmp/{}", "d".repeat(110));
    let run = uml_check(
        &["--json"],
        &with_base(&[&long, "eth1=daemon,,unix,/tmp/no-such-switch.ctl"]),
    );
    assert_eq!(run.code(), 1);
    assert_eq!(
        run.findings("daemon-path-too-long").len(),
        1,
        "{}",
        run.context()
    );
    assert_eq!(run.findings("daemon-missing").len(), 2, "{}", run.context());

    let dir = testkit::short_tempdir("chk");
    let ctl = dir.path().join("s.ctl");
    let _listener = std::os::unix::net::UnixListener::bind(&ctl).unwrap();
    let ok = uml_check(
        &["--json"],
        &with_base(&[&format!("eth0=daemon,,unix,{}", ctl.display())]),
    );
    assert!(ok.findings("daemon-missing").is_empty(), "{}", ok.context());
}

#[test]
fn vec_keys_transport_pairs_and_limits() {
    let many: String = (0..21).map(|i| format!(",k{i}=1")).collect();
    let many = format!("vec9:transport=tap{many}");
    let run = uml_check(
        &["--no-fs", "--json"],
        &with_base(&[
            "vec0:ifname=tap0",
            "vec1:transport=hybrid",
            "vec2:transport=gre,rx_key=1",
            "vec3:transport=l2tpv3,src=192.0.2.1",
            "vec4:transport=tap,mtu=9",
            "vec5:transport=tap,colour=blue",
            "vec6:transport=bogus",
            &many,
        ]),
    );
    assert_eq!(run.code(), 1);
    assert_eq!(
        run.findings("vec-no-transport").len(),
        1,
        "{}",
        run.context()
    );
    let missing: Vec<String> = run
        .findings("vec-missing-key")
        .iter()
        .map(|f| f["message"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        missing
            .iter()
            .any(|m| m.contains("hybrid transport needs `ifname=`")),
        "{missing:?}"
    );
    assert!(
        missing.iter().any(|m| m.contains("`rx_session=`")),
        "{missing:?}"
    );
    assert!(
        run.findings("vec-pair")
            .iter()
            .any(|f| f["arg"] == "vec2:transport=gre,rx_key=1")
    );
    assert_eq!(run.findings("vec-mtu").len(), 1);
    assert!(
        run.findings("vec-unknown-key")
            .iter()
            .any(|f| f["message"].as_str().unwrap().contains("colour"))
    );
    assert_eq!(run.findings("vec-transport").len(), 1);
    assert_eq!(run.findings("vec-too-many").len(), 1);
}

#[test]
fn channel_mistakes_get_a_suggestion() {
    let run = uml_check(
        &["--no-fs"],
        &with_base(&[
            "con1=/dev/tty8",
            "con2=fd:x",
            "ssl64=pts",
            "con16=null",
            "con3=fd:0,bogus",
        ]),
    );
    assert_eq!(run.code(), 1);
    run.assert_line("error: con1=/dev/tty8: `/dev/tty8` is not a channel");
    run.assert_line("did you mean `tty:/dev/tty8`?");
    run.assert_line("error: con2=fd:x:");
    run.assert_line("error: ssl64=pts: ssl64 is out of range: ssl lines are 0-63");
    run.assert_line("error: con16=null: con16 is out of range: con lines are 0-15");
    run.assert_line("error: con3=fd:0,bogus: `bogus` is not a channel");
}

#[test]
fn without_con_debians_default_is_flagged() {
    let run = uml_check(&["--no-fs"], &["root=/dev/root", "umid=t"]);
    assert_eq!(run.code(), 0, "{}", run.context());
    run.assert_line("warning: no `con=`");
    run.assert_line("pass con=null");
    let strict = uml_check(&["--no-fs", "--strict"], &["root=/dev/root", "umid=t"]);
    assert_eq!(
        strict.code(),
        1,
        "--strict fails on warnings{}",
        strict.context()
    );
}

#[test]
fn umid_length_and_repetition() {
    let long = format!("umid={}", "u".repeat(64));
    let run = uml_check(
        &["--no-fs", "--json"],
        &["con=null", "root=/dev/root", &long, "umid=a", "umid=b"],
    );
    assert_eq!(run.findings("umid-too-long").len(), 1, "{}", run.context());
    assert_eq!(
        run.findings("umid-after-refused").len(),
        1,
        "{}",
        run.context()
    );
    let twice = run.findings("umid-twice");
    assert_eq!(twice.len(), 1);
    assert_eq!(twice[0]["arg"], "umid=b");
    assert_eq!(run.code(), 0, "warnings alone do not fail{}", run.context());
}

#[test]
fn socket_paths_over_107_bytes_are_errors() {
    let deep = format!("/tmp/{}", "x".repeat(100));
    let dir_arg = format!("uml_dir={deep}");
    let notify = format!("mconsole=notify:{deep}/notify.sock");
    let bess = format!("vec0:transport=bess,dst={deep}/bess.sock");
    let run = uml_check(
        &["--no-fs", "--json"],
        &with_base(&[&dir_arg, &notify, &bess]),
    );
    assert_eq!(run.code(), 1);
    let m = run.findings("mconsole-path-too-long");
    assert_eq!(m.len(), 1, "{}", run.context());
    assert!(
        m[0]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("{deep}/t1/mconsole"))
    );
    assert_eq!(run.findings("notify-path-too-long").len(), 1);
    assert_eq!(run.findings("bess-path-too-long").len(), 1);
}

#[test]
fn global_uml_dir_is_used_when_the_command_line_has_none() {
    let deep = format!("/tmp/{}", "y".repeat(110));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_uml"));
    cmd.args([
        "--uml-dir",
        &deep,
        "check",
        "--no-fs",
        "--json",
        "con=null",
        "umid=a",
        "root=/dev/root",
    ]);
    let output = cmd.output().unwrap();
    let run = Run {
        argv: vec!["--uml-dir".into(), deep.clone(), "check".into()],
        output,
    };
    assert_eq!(
        run.findings("mconsole-path-too-long").len(),
        1,
        "{}",
        run.context()
    );
}

#[test]
fn obsolete_options_say_where_they_land() {
    let run = uml_check(
        &["--no-fs"],
        &with_base(&["mode=tt", "honeypot", "debugtrace", "fake_ide"]),
    );
    assert_eq!(run.code(), 0, "{}", run.context());
    run.assert_line("warning: mode=tt: `mode=<tt|skas|skas0>` is obsolete and has no effect: it lands in init's environment");
    run.assert_line(
        "warning: honeypot: `honeypot` is obsolete and has no effect: it lands in init's argv",
    );
    run.assert_line("warning: debugtrace: `debugtrace` is obsolete and has no effect: it lands in init's argv; the kernel also logs `'debug' is not necessary");
    run.assert_line(
        "warning: fake_ide: `fake_ide` is obsolete and has no effect: it is ignored; the kernel also logs `The fake_ide option has been removed`",
    );
    // 7.2 has no `debug` handler, so the prefix warning is not printed there.
    let on_72 = uml_check(
        &["--no-fs", "--kernel-version", "7.2"],
        &with_base(&["debugtrace"]),
    );
    on_72.assert_line(
        "warning: debugtrace: `debugtrace` is obsolete and has no effect: it lands in init's argv",
    );
    assert!(
        !on_72.stdout().contains("not necessary"),
        "{}",
        on_72.context()
    );
}

// ---- kernels are plural: the same words on 6.1 and 7.2 ----

/// Debian's packaged 6.1 kernel (`linux` on PATH) and a 7.x kernel built by `uml kernel build`:
/// scripts/install-deps provides both. Their profiles need no boot, so both are judged from the
/// real binaries even where 6.1 cannot run a process.
const K61: &str = "6.1";
const K72: &str = "7.2";

/// `--kernel PATH` of the real kernel of that series.
fn kernel_option(series: &'static str) -> [String; 2] {
    let path = if series.starts_with("6.") {
        uml::kernel::packaged()
            .filter(|k| uml::kernel::Profile::read(k).is_ok_and(|p| p.series() == series))
    } else {
        uml::kernel::installed()
            .into_iter()
            .find(|k| k.release.starts_with(&format!("{series}.")))
            .map(|k| k.path)
    };
    let path = path.unwrap_or_else(|| {
        panic!("no {series} kernel here: run scripts/install-deps (it installs Debian's 6.1 and builds a 7.x)")
    });
    ["--kernel".into(), path.to_string_lossy().into_owned()]
}

#[test]
fn output_names_the_kernel_the_verdicts_are_for() {
    let [flag, value] = kernel_option(K61);
    let (flag, value) = (flag.as_str(), value.as_str());
    let run = uml_check(&["--no-fs", flag, value], &with_base(&[]));
    run.assert_line("kernel: 6.1.");
    let json = uml_check(
        &["--no-fs", "--json", "--kernel-version", "7.2"],
        &with_base(&[]),
    );
    assert_eq!(
        json.json()["kernel"]["release"],
        "7.2.0",
        "{}",
        json.context()
    );
    assert_eq!(json.json()["kernel"]["assumed"], true, "{}", json.context());
}

#[test]
fn eth_on_7x_is_an_error_naming_the_vec_equivalent() {
    let [flag, value] = kernel_option(K72);
    let (flag, value) = (flag.as_str(), value.as_str());
    let run = uml_check(
        &["--no-fs", flag, value],
        &with_base(&[
            "eth0=daemon,,unix,/tmp/x.ctl",
            "eth1=tuntap,tap7",
            "eth2=mcast",
            "eth3=vde,/tmp/vde",
        ]),
    );
    assert_eq!(run.code(), 1, "{}", run.context());
    run.assert_line("error: eth0=daemon,,unix,/tmp/x.ctl: this 7.2 kernel has no eth driver");
    run.assert_line("lands in init's environment; the vector driver has no uml_switch client; `vec0:transport=bess");
    run.assert_line("error: eth1=tuntap,tap7: this 7.2 kernel has no eth driver");
    run.assert_line("use `vec1:transport=tap,ifname=tap7`");
    run.assert_line("eth2=mcast: this 7.2 kernel has no eth driver (no CONFIG_UML_NET; 7.x has only the vector driver): no eth2 is created and the word lands in init's environment; nothing is equivalent");
    run.assert_line("use `vec3:transport=vde,vnl=/tmp/vde`");
    // The same words on 6.1 are fine apart from the missing sockets and devices.
    let [flag, value] = kernel_option(K61);
    let (flag, value) = (flag.as_str(), value.as_str());
    let on_61 = uml_check(
        &["--no-fs", flag, value],
        &with_base(&["eth0=daemon,,unix,/tmp/x.ctl"]),
    );
    assert_eq!(on_61.code(), 0, "{}", on_61.context());
}

#[test]
fn options_new_after_61_are_known_on_7x_and_errors_on_61() {
    let words = ["seccomp=on", "ncpus=2"];
    let [flag, value] = kernel_option(K61);
    let (flag, value) = (flag.as_str(), value.as_str());
    let on_61 = uml_check(&["--no-fs", flag, value], &with_base(&words));
    assert_eq!(on_61.code(), 1, "{}", on_61.context());
    on_61.assert_line("error: seccomp=on: `seccomp=<on|auto|off>` came after 6.1: the word lands in init's environment");
    on_61.assert_line(
        "error: ncpus=2: `ncpus=<n>` came after 6.1: the word lands in init's environment",
    );
    let on_72 = uml_check(
        &["--no-fs", "--kernel-version", "7.2"],
        &with_base(&["seccomp=on"]),
    );
    assert_eq!(on_72.code(), 0, "{}", on_72.context());
    assert!(
        !on_72.stdout().contains("seccomp=on:"),
        "{}",
        on_72.context()
    );
    let bad = uml_check(
        &["--no-fs", "--kernel-version", "7.2"],
        &with_base(&["seccomp=yes"]),
    );
    bad.assert_line("error: seccomp=yes: `seccomp=yes` is not accepted: expected on, auto or off");
    // 7.2 built without CONFIG_SMP (as umlkit's and Debian's are) has no ncpus= either.
    let [flag, value] = kernel_option(K72);
    let (flag, value) = (flag.as_str(), value.as_str());
    let no_smp = uml_check(&["--no-fs", flag, value], &with_base(&["ncpus=2"]));
    no_smp.assert_line(
        "error: ncpus=2: `ncpus=<n>` is not built into this 7.2 kernel (no CONFIG_SMP)",
    );
}

#[test]
fn options_gone_after_61_say_what_7x_does_with_the_word() {
    let run = uml_check(
        &["--no-fs", "--kernel-version", "7.2"],
        &with_base(&["nosysemu", "iomem=a,/tmp/f", "debug"]),
    );
    run.assert_line(
        "error: nosysemu: `nosysemu` was removed before 7.2: the word lands in init's argv",
    );
    run.assert_line("warning: iomem=a,/tmp/f: `iomem=<name>,<file>` was removed before 7.2: the word is taken by the generic iomem= option");
    run.assert_line(
        "warning: debug: `debug` was removed before 7.2: the word is the generic debug loglevel",
    );
    // 6.1 keeps mem= and noreboot on the command line for init; 7.2 removes them.
    let on_61 = uml_check(
        &["--no-fs", "--kernel-version", "6.1"],
        &with_base(&["noreboot"]),
    );
    on_61.assert_line("note: noreboot: stays on the kernel command line");
    let on_72 = uml_check(
        &["--no-fs", "--kernel-version", "7.2"],
        &with_base(&["noreboot"]),
    );
    assert!(!on_72.stdout().contains("noreboot:"), "{}", on_72.context());
    assert!(!on_72.stdout().contains("mem=64M:"), "{}", on_72.context());
}

#[test]
fn dotted_words_are_dropped_not_passed_to_init() {
    for kernel in ["6.1", "7.2"] {
        let run = uml_check(
            &["--no-fs", "--kernel-version", kernel],
            &with_base(&["192.168.0.100", "foo.bar=1", "key=a.b"]),
        );
        run.assert_line("note: 192.168.0.100: `192.168.0.100` has a `.` before any `=`: the kernel takes it for a parameter of a module that is not there and drops it silently");
        run.assert_line("note: foo.bar=1: `foo.bar=1` has a `.` before any `=`");
        run.assert_line(
            "note: key=a.b: no option claims `key=`: the kernel passes it to init's environment",
        );
    }
}

#[test]
fn repeated_root_init_and_rootfstype_say_the_last_one_counts() {
    let run = uml_check(
        &["--no-fs"],
        &with_base(&["root=/dev/ubda", "init=/a", "init=/b", "rootfstype=ext4"]),
    );
    run.assert_line("warning: root=/dev/ubda: `root=` is also given by argument 1: the kernel uses the last one");
    run.assert_line("warning: init=/b: `init=` is also given by argument");
    run.assert_line("warning: rootfstype=ext4: `rootfstype=` is also given by argument 2");
}

#[test]
fn ethertap_warns_and_a_missing_tuntap_device_warns() {
    let run = uml_check(
        &[],
        &with_base(&["eth0=ethertap,tap0", "eth1=tuntap,umlkit-no-such-tap"]),
    );
    run.assert_line("warning: eth0=ethertap,tap0: ethertap needs the host's long-gone ethertap driver: bringing eth0 up fails (`etap_tramp failed`)");
    run.assert_line("warning: eth1=tuntap,umlkit-no-such-tap: host interface `umlkit-no-such-tap` does not exist");
}

#[test]
fn pty_channels_need_legacy_ptys_on_the_host() {
    let run = uml_check(&[], &with_base(&["ssl=pty"]));
    let legacy = std::fs::read_dir("/dev").unwrap().flatten().any(|e| {
        let n = e.file_name().to_string_lossy().into_owned();
        n.len() == 5 && n.starts_with("pty")
    });
    let flagged = run
        .stdout()
        .contains("getmaster - no usable host pty devices");
    assert_eq!(flagged, !legacy, "{}", run.context());
    let no_fs = uml_check(&["--no-fs"], &with_base(&["ssl=pty"]));
    assert!(!no_fs.stdout().contains("getmaster"), "{}", no_fs.context());
}

#[test]
fn uml_options_that_reach_init_are_notes() {
    let run = uml_check(
        &["--no-fs"],
        &with_base(&["uml_dir=/tmp/u", "nosysemu", "hello", "foo=bar"]),
    );
    assert_eq!(run.code(), 0);
    run.assert_line("note: mem=64M: stays on the kernel command line: init also gets `mem=64M` as an environment variable");
    run.assert_line("note: uml_dir=/tmp/u: stays on the kernel command line");
    run.assert_line("note: nosysemu: stays on the kernel command line: init also gets `nosysemu` as an argument");
    run.assert_line(
        "note: hello: no option claims `hello`: the kernel passes it to init as an argument",
    );
    run.assert_line(
        "note: foo=bar: no option claims `foo=`: the kernel passes it to init's environment",
    );
}

#[test]
fn kernel_words_that_look_like_options_are_checked_after_dashdash() {
    let run = uml_check(&["--no-fs"], &with_base(&["--help"]));
    assert_eq!(run.code(), 0, "{}", run.context());
    run.assert_line("note: --help: `--help` makes the kernel print and exit 0 without booting");
}

#[test]
fn overlong_command_line_and_too_many_init_args() {
    let words: Vec<String> = (0..700).map(|i| format!("w{i:04}")).collect();
    let mut all: Vec<&str> = BASE.to_vec();
    all.extend(words.iter().map(String::as_str));
    let run = uml_check(&["--no-fs", "--json"], &all);
    assert_eq!(run.code(), 1);
    let long = run.findings("cmdline-too-long");
    assert_eq!(long.len(), 1, "{}", run.context());
    assert!(
        long[0]["message"]
            .as_str()
            .unwrap()
            .contains("Too many command line arguments")
    );
    let init = run.findings("init-too-many");
    assert_eq!(init.len(), 1, "{}", run.context());
    assert!(init[0]["message"].as_str().unwrap().contains("arguments"));

    // BASE's words are consumed by the kernel or, like mem=, go to the environment.
    let args: Vec<String> = (0..128).map(|i| format!("a{i}")).collect();
    let mut fits: Vec<&str> = BASE.to_vec();
    fits.extend(args.iter().map(String::as_str));
    let run = uml_check(&["--no-fs", "--json"], &fits);
    assert!(
        run.findings("init-too-many").is_empty(),
        "128 arguments fit{}",
        run.context()
    );

    // mem=64M is one variable already; 126 more make 127, the most that fit.
    let vars: Vec<String> = (0..127).map(|i| format!("e{i}=1")).collect();
    let mut env: Vec<&str> = BASE.to_vec();
    env.extend(vars.iter().take(126).map(String::as_str));
    let run = uml_check(&["--no-fs", "--json"], &env);
    assert!(
        run.findings("init-too-many").is_empty(),
        "127 variables fit{}",
        run.context()
    );
    env.push(&vars[126]);
    let run = uml_check(&["--no-fs", "--json"], &env);
    let found = run.findings("init-too-many");
    assert_eq!(found.len(), 1, "{}", run.context());
    assert!(
        found[0]["message"]
            .as_str()
            .unwrap()
            .contains("Too many boot env vars")
    );
}

/// A tmpfs mounted noexec, unmounted on drop.
struct NoexecMount {
    dir: tempfile::TempDir,
}

impl NoexecMount {
    fn new() -> NoexecMount {
        let dir = tempfile::Builder::new()
            .prefix("chk-nx")
            .tempdir_in("/tmp")
            .unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "noexec,size=1m", "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(status.success(), "mount a noexec tmpfs");
        NoexecMount { dir }
    }
}

impl Drop for NoexecMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
fn noexec_tmpdir_is_an_error_and_the_kernel_refuses_to_boot() {
    let nx = NoexecMount::new();
    let output = Command::new(env!("CARGO_BIN_EXE_uml"))
        .args(["check", "--json", "con=null", "root=/dev/root"])
        .env("TMPDIR", nx.dir.path())
        .output()
        .unwrap();
    let run = Run {
        argv: vec!["check (TMPDIR on a noexec tmpfs)".into()],
        output,
    };
    let found = run.findings("memory-dir-noexec");
    assert_eq!(found.len(), 1, "{}", run.context());
    let expected = format!("{} must be not mounted noexec", nx.dir.path().display());
    assert!(
        found[0]["message"].as_str().unwrap().contains(&expected),
        "{}",
        run.context()
    );

    // The kernel checks this before anything else and exits 1 with that message.
    let uml_dir = testkit::short_tempdir("chk-nxu");
    let mut child = Command::new(testkit::kernel())
        .args([
            "mem=64M",
            "root=/dev/root",
            "rootfstype=hostfs",
            "rootflags=/",
            "ro",
        ])
        .arg("init=/bin/true")
        .arg(format!("uml_dir={}", uml_dir.path().display()))
        .args(["con=null", "con0=fd:0,fd:1"])
        .env("TMPDIR", nx.dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the kernel");
    let deadline = std::time::Instant::now() + BOOT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            testkit::kill_group(child.id());
            let _ = child.wait();
            panic!("the kernel kept running with a noexec TMPDIR");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    let log =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains(&expected), "{log}");
}

#[test]
fn missing_tmpdir_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = Command::new(env!("CARGO_BIN_EXE_uml"))
        .args(["check", "--json", "con=null", "root=/dev/root"])
        .env("TMPDIR", dir.path().join("gone"))
        .output()
        .unwrap();
    let missing = Run {
        argv: vec!["check (TMPDIR missing)".into()],
        output: missing,
    };
    assert_eq!(
        missing.findings("memory-dir-missing").len(),
        1,
        "{}",
        missing.context()
    );
}

#[test]
fn explain_says_what_each_option_does() {
    let run = uml_check(&["--no-fs", "--explain"], &with_base(&["ubd1=/a"]));
    run.assert_line("ubd1=/a: Attaches <file> as /dev/ubd<letter>.");
    run.assert_line("mem=64M: Physical memory of the guest.");
    let json = uml_check(&["--no-fs", "--json"], &with_base(&["udb1=/a"]));
    let f = &json.findings("udb-typo")[0];
    assert!(f["explain"].as_str().unwrap().contains("typo of ubd"));
    assert_eq!(f["severity"], "error");
    assert_eq!(json.json()["ok"], false);
}

#[test]
fn mconsole_notify_socket_must_be_a_socket() {
    let dir = testkit::short_tempdir("chk");
    let sock = dir.path().join("n.sock");
    let _s = UnixDatagram::bind(&sock).unwrap();
    let good = format!("mconsole=notify:{}", sock.display());
    let bad = format!("mconsole=notify:{}/none", dir.path().display());
    let run = uml_check(&["--json"], &with_base(&[&good, &bad, "mconsole=foo"]));
    assert_eq!(run.findings("notify-missing").len(), 1, "{}", run.context());
    assert_eq!(run.findings("notify-missing")[0]["arg"], bad.as_str());
    assert_eq!(run.findings("mconsole-syntax").len(), 1);
}

// ---- the kernel really does what the messages say ----

/// The profile of the kernel the boot tests run (`testkit::kernel()`, a bare name is looked up
/// on PATH).
fn kernel_profile() -> uml::kernel::Profile {
    let kernel = testkit::kernel();
    let path = match kernel.to_str() {
        Some(name) if !name.contains('/') => uml::kernel::on_path(name).expect("kernel on PATH"),
        _ => kernel,
    };
    uml::kernel::Profile::read(&path).expect("profile the kernel")
}

const BOOT: Duration = Duration::from_secs(30);

fn boot_and_log(prefix: &str, arg: &str, body: &str) -> String {
    let mut guest = GuestBuilder::new(prefix)
        .arg(arg)
        .body(body)
        .boot()
        .unwrap_or_else(|e| panic!("guest with {arg} did not boot: {e}"));
    guest.wait_exit(BOOT).expect("guest powers off");
    guest.log()
}

#[test]
fn kernel_logs_the_udb_typo_and_attaches_no_disk() {
    let arg = "udb1=/dev/null";
    let run = uml_check(&["--no-fs"], &with_base(&[arg]));
    run.assert_line(
        "udb1=/dev/null specified on command line is almost certainly a ubd -> udb TYPO",
    );
    let log = boot_and_log("chk-udb", arg, "echo BLOCK:$(ls /sys/block | tr '\\n' ' ')");
    assert!(
        log.contains(
            "udb1=/dev/null specified on command line is almost certainly a ubd -> udb TYPO"
        ),
        "{log}"
    );
    let block = log
        .lines()
        .find(|l| l.starts_with("BLOCK:"))
        .expect("BLOCK line");
    assert!(!block.contains("ubdb"), "{block}");
}

#[test]
fn kernel_ignores_an_unknown_transport_without_a_word() {
    let arg = "eth0=tunntap,tap0";
    let run = uml_check(&["--no-fs"], &with_base(&[arg]));
    run.assert_line("creates no eth0");
    let log = boot_and_log(
        "chk-eth",
        arg,
        "echo NET:$(ls /sys/class/net | tr '\\n' ' ')",
    );
    let net = log
        .lines()
        .find(|l| l.starts_with("NET:"))
        .expect("NET line");
    assert!(!net.contains("eth0"), "{net}");
    assert!(
        !log.contains("tunntap".to_uppercase().as_str())
            && !log.lines().any(|l| l.contains("tunntap")
                && !l.contains("Kernel command line")
                && !l.contains("Unknown kernel command line parameters")),
        "{log}"
    );
}

#[test]
fn kernel_reads_ubd010_as_unit_8() {
    let arg = "ubd010=/dev/null";
    let run = uml_check(&["--no-fs", "--json"], &with_base(&[arg]));
    assert!(
        run.findings("ubd-unit-read-as")[0]["message"]
            .as_str()
            .unwrap()
            .contains("/dev/ubdi")
    );
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("d.img");
    std::fs::write(&img, vec![0u8; 1 << 20]).unwrap();
    let log = boot_and_log(
        "chk-ubd",
        &format!("ubd010={}", img.display()),
        "echo BLOCK:$(ls /sys/block | tr '\\n' ' ')",
    );
    let block = log
        .lines()
        .find(|l| l.starts_with("BLOCK:"))
        .expect("BLOCK line");
    assert!(block.contains("ubdi"), "{block}");
}

#[test]
fn kernel_refuses_a_bad_tty_channel_and_passes_obsolete_words_to_init() {
    let profile = kernel_profile();
    let path = profile.path.display().to_string();
    let run = uml_check(
        &["--no-fs", "--kernel", &path],
        &with_base(&["con1=/dev/tty8", "honeypot", "mode=skas"]),
    );
    run.assert_line("did you mean `tty:/dev/tty8`?");
    run.assert_line("honeypot: `honeypot` is obsolete and has no effect: it lands in init's argv");
    run.assert_line("mode=skas: `mode=<tt|skas|skas0>` is obsolete and has no effect: it lands in init's environment");
    let mut guest = GuestBuilder::new("chk-con")
        .arg("con1=/dev/tty8")
        .arg("honeypot")
        .arg("mode=skas")
        .body("echo ARGV:\"$*\"; echo ENV:$mode")
        .boot()
        .expect("boot");
    guest.wait_exit(BOOT).expect("guest powers off");
    let log = guest.log();
    assert!(
        log.contains("setup_one_line failed for device 1 : failed to parse channel pair"),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.starts_with("ARGV:") && l.contains("honeypot")),
        "{log}"
    );
    assert!(log.lines().any(|l| l == "ENV:skas"), "{log}");
}

/// Boot a guest with `extra` words and report whether `uml check` predicted an init-slot panic
/// and whether the kernel panicked.
fn init_limit_agrees(prefix: &str, extra: &[String]) -> (bool, bool) {
    let mut builder = GuestBuilder::new(prefix).body("true").no_wait();
    for word in extra {
        builder = builder.arg(word.clone());
    }
    let words = builder.argv(
        std::path::Path::new("/init"),
        std::path::Path::new("/tmp/u"),
    );
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let path = kernel_profile().path.display().to_string();
    let run = uml_check(&["--no-fs", "--json", "--kernel", &path], &words);
    let predicted = !run.findings("init-too-many").is_empty();
    if predicted_only(extra) {
        return (predicted, predicted);
    }
    let mut guest = builder.boot().expect("start the kernel");
    let status = guest.wait_exit(BOOT).expect("the guest ends");
    let log = guest.log();
    let panicked = log.contains("Too many boot env vars");
    assert_eq!(panicked, !status.success(), "{log}");
    (predicted, panicked)
}

/// Marker: the last word tells [`init_limit_agrees`] to only ask `uml check`.
const PREDICT_ONLY: &str = "predict-only";

fn predicted_only(extra: &[String]) -> bool {
    extra.last().is_some_and(|w| w == PREDICT_ONLY)
}

#[test]
fn init_environment_limit_matches_the_kernel() {
    // How many variables fit depends on the kernel (6.1 leaves mem= and uml_dir= in init's
    // environment, 7.2 removes them): find where `uml check` predicts the panic for the kernel
    // that boots, then boot one below and at that count.
    let vars: Vec<String> = (0..130).map(|i| format!("e{i}=1")).collect();
    let first = (100..130)
        .find(|n| {
            let mut words = vars[..*n].to_vec();
            words.push(PREDICT_ONLY.into());
            init_limit_agrees("chk-env", &words).0
        })
        .expect("a panic is predicted below 130 variables");
    assert_eq!(
        init_limit_agrees("chk-env", &vars[..first - 1]),
        (false, false)
    );
    assert_eq!(init_limit_agrees("chk-env", &vars[..first]), (true, true));
}

#[test]
fn option_table_covers_every_option_in_the_kernels_help() {
    let output = Command::new(testkit::kernel())
        .arg("--help")
        .output()
        .expect("run the kernel");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    let profile = kernel_profile();
    let mut seen = 0;
    for line in help.lines().skip(1) {
        if line.is_empty() || line.starts_with([' ', '\t']) {
            continue;
        }
        let name = line.split(['[', '<']).next().unwrap_or(line);
        let spec = uml::options::lookup(name)
            .unwrap_or_else(|| panic!("`{name}` from `linux --help` is not in the option table"));
        // In the binary's --help, so the table must say this kernel has it.
        let presence = spec.presence(&profile);
        assert!(
            !presence.is_absent(),
            "{name}: {presence:?} for {}",
            profile.release
        );
        seen += 1;
    }
    assert!(seen >= 20, "only {seen} options in:\n{help}");
}

#[test]
fn a_cow_whose_backing_file_changed_is_an_error_with_the_kernels_reason() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.img");
    let cow = dir.path().join("disk.cow");
    std::fs::File::create(&base)
        .unwrap()
        .set_len(4 << 20)
        .unwrap();
    uml::cow::create(&cow, &base, false).unwrap();
    let word = format!("ubd1={}", cow.display());
    let clean = std::process::Command::new(env!("CARGO_BIN_EXE_uml"))
        .args(["check", "con=null", &word])
        .output()
        .unwrap();
    assert!(
        clean.status.success(),
        "{}",
        String::from_utf8_lossy(&clean.stdout)
    );

    // Touching the backing file changes its mtime: the kernel refuses the COW from then on.
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&base)
        .unwrap()
        .set_modified(later)
        .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_uml"))
        .args(["check", "--json", "con=null", &word])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let finding = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == "cow-backing-mismatch")
        .unwrap_or_else(|| panic!("no cow-backing-mismatch in {report}"));
    assert!(
        finding["message"]
            .as_str()
            .unwrap()
            .contains("mtime mismatch"),
        "{finding}"
    );

    // A file that exists but has no COW header, given as the COW of a pair.
    let plain = dir.path().join("plain.img");
    std::fs::write(&plain, vec![0u8; 4096]).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_uml"))
        .args([
            "check",
            "con=null",
            &format!("ubd2={},{}", plain.display(), base.display()),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Failed to read COW header"));
}

#[test]
fn a_closed_pipe_ends_the_report_quietly() {
    use std::os::unix::process::ExitStatusExt;
    // Enough findings to fill a pipe's buffer many times over.
    let words: Vec<String> = (0..3000).map(|i| format!("mode{i}=tt")).collect();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_uml"))
        .args(["check", "--json", "--no-fs", "--kernel-version", "7.2"])
        .args(&words)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away after one byte, as `| head -c1` does.
    let mut stdout = child.stdout.take().unwrap();
    let mut one = [0u8; 1];
    std::io::Read::read_exact(&mut stdout, &mut one).unwrap();
    drop(stdout);
    let out = testkit::output_within(child, std::time::Duration::from_secs(30), "uml check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "{stderr}"
    );
    assert!(
        out.status.signal() == Some(libc::SIGPIPE) || out.status.success(),
        "ends as a C tool does: {:?}",
        out.status
    );
}

#[test]
fn vec_sessions_and_keys_above_int_max_are_errors() {
    let run = uml_check(
        &["--no-fs", "--json"],
        &with_base(&[
            "vec0:transport=l2tpv3,src=192.0.2.1,dst=192.0.2.2,rx_session=0xffffffff,tx_session=1",
            "vec1:transport=gre,src=192.0.2.1,dst=192.0.2.2,rx_key=2147483648,tx_key=-1",
            "vec2:transport=l2tpv3,src=192.0.2.1,dst=192.0.2.2,rx_session=0x7fffffff,tx_session=-1",
        ]),
    );
    let found: Vec<String> = run
        .findings("vec-int-range")
        .iter()
        .map(|f| f["message"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(found.len(), 2, "{found:?}\n{}", run.context());
    assert!(found[0].contains("rx_session=0xffffffff") && found[0].contains("crashes"));
    assert!(found[1].contains("rx_key=2147483648"));
}

/// The kernel of `series` booted straight (init is `/bin/true`) with `words`: what it printed
/// before init ran. Only the boot messages are looked at, so this works where the kernel
/// cannot run a process.
fn boot_log(series: &'static str, words: &[&str]) -> String {
    let [_, kernel] = kernel_option(series);
    let dir = testkit::short_tempdir("chk-n");
    let umid = testkit::unique_umid("chk-n");
    let out = testkit::output_of(
        Command::new(&kernel)
            .args(testkit::guest_argv(
                "64M",
                std::path::Path::new("/bin/true"),
            ))
            .arg(format!("umid={umid}"))
            .arg(format!("uml_dir={}", dir.path().display()))
            .args(words)
            .stdin(std::process::Stdio::null()),
        testkit::RUN_TIMEOUT,
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A number option's value is judged as each kernel's handler reads it, and booting the real
/// kernels shows they do: 6.1 reads `lpj=12abc` as 12 (simple_strtoul), 7.2 refuses it
/// (kstrtoul) and hands the word to init; both refuse `loglevel=x`.
#[test]
fn numbers_are_judged_as_each_kernel_reads_them() {
    let words = ["lpj=12abc", "loglevel=x", "stderr=y"];
    let [flag, value] = kernel_option(K61);
    let on_61 = uml_check(&["--no-fs", &flag, &value], &with_base(&words));
    on_61.assert_line("warning: lpj=12abc: `12abc` is read as 12: the kernel stops at `abc`");
    on_61.assert_line("error: loglevel=x: `x` is not a number");
    on_61.assert_line("(`Malformed early option 'loglevel'`) and keeps its level");
    on_61.assert_line("error: stderr=y: `y` is not a number");
    let [flag, value] = kernel_option(K72);
    let on_72 = uml_check(&["--no-fs", &flag, &value], &with_base(&words));
    on_72.assert_line(
        "error: lpj=12abc: `12abc` is not a number: the kernel refuses it and passes the word to init's environment",
    );
    on_72.assert_line("error: loglevel=x: `x` is not a number");
    assert_eq!(on_72.code(), 1, "{}", on_72.context());
    let fine = uml_check(
        &["--no-fs", &flag, &value],
        &with_base(&["lpj=0x10", "loglevel=7"]),
    );
    assert_eq!(fine.code(), 0, "{}", fine.context());

    let log = boot_log(K61, &["lpj=12abc", "loglevel=x"]);
    assert!(
        log.contains("preset value.. 0.00 BogoMIPS (lpj=12)"),
        "{log}"
    );
    assert!(log.contains("Malformed early option 'loglevel'"), "{log}");
    let log = boot_log(K72, &["lpj=12abc", "loglevel=x"]);
    assert!(log.contains("\"lpj=12abc\""), "{log}");
    assert!(log.contains("Calibrating delay loop..."), "{log}");
    assert!(log.contains("Malformed early option 'loglevel'"), "{log}");
}
