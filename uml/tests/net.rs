//! `uml run --net` against real guests, in network namespaces this test creates: a tap device
//! that `uml run` creates, addresses and removes; and guests in two namespaces joined by a
//! veth pair (two "hosts") that reach each other through l2tpv3 and gre tunnels.
//!
//! These need root (namespaces, tap devices, raw sockets) and `ip`; without them they fail
//! with a line that says why (CI runs as root; scripts/install-deps installs iproute2). Every namespace is deleted on drop (which also removes
//! every link in it), so nothing is left behind, also when a test fails. Only addresses from
//! the documentation ranges are used, and only inside those namespaces and guests.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use testkit::UmlDir;

const TIMEOUT: Duration = Duration::from_secs(90);

fn uml_bin() -> &'static str {
    env!("CARGO_BIN_EXE_uml")
}

/// Checks that this test can create namespaces and devices (root, iproute2); fails if not.
fn can_make_namespaces() -> bool {
    let root = nix::unistd::geteuid().is_root();
    let ip = Command::new("ip")
        .arg("-V")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    // CI and scripts/test run as root, and scripts/install-deps installs iproute2: a missing
    // part fails the test instead of skipping it.
    assert!(
        root && ip,
        "these tests need root and the ip command (iproute2; run scripts/install-deps)"
    );
    true
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace, deleted with everything in it on drop.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("umlkit-{tag}-{}", std::process::id());
        ip(&["netns", "add", &name]);
        let ns = Netns(name);
        ip(&["-n", &ns.0, "link", "set", "lo", "up"]);
        ns
    }

    fn has_link(&self, name: &str) -> bool {
        Command::new("ip")
            .args(["-n", &self.0, "link", "show", "dev", name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn ping(&self, addr: &str) -> bool {
        Command::new("ip")
            .args(["netns", "exec", &self.0, "ping", "-c1", "-W1", addr])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Two namespaces joined by a veth pair: host A at 198.51.100.1, host B at 198.51.100.2.
fn two_hosts(tag: &str) -> (Netns, Netns) {
    let a = Netns::new(&format!("{tag}a"));
    let b = Netns::new(&format!("{tag}b"));
    ip(&[
        "-n", &a.0, "link", "add", "wire", "type", "veth", "peer", "name", "wire", "netns", &b.0,
    ]);
    for (ns, addr) in [(&a, "198.51.100.1/24"), (&b, "198.51.100.2/24")] {
        ip(&["-n", &ns.0, "addr", "add", addr, "dev", "wire"]);
        ip(&["-n", &ns.0, "link", "set", "wire", "up"]);
    }
    (a, b)
}

/// `uml run` in namespace `ns`, running `script` in the guest.
struct RunningUml(Child);

impl RunningUml {
    fn start(ns: &Netns, uml_dir: &Path, net: &str, script: &str) -> RunningUml {
        RunningUml::start_with(ns, uml_dir, &["--net", net], script)
    }

    fn start_with(ns: &Netns, uml_dir: &Path, options: &[&str], script: &str) -> RunningUml {
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.0, uml_bin(), "--uml-dir"])
            .arg(uml_dir)
            .arg("run")
            .arg("--kernel")
            .arg(testkit::kernel())
            .args(["-m", "96M"])
            .args(options)
            .args(["--", "sh", "-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        RunningUml(child)
    }

    fn running(&mut self) -> bool {
        self.0.try_wait().unwrap().is_none()
    }

    /// Its exit status, stdout and stderr once it exits, within [`TIMEOUT`].
    fn finish(mut self) -> (bool, String) {
        let deadline = Instant::now() + TIMEOUT;
        while self.running() {
            assert!(Instant::now() < deadline, "uml run did not finish");
            sleep(Duration::from_millis(50));
        }
        let ok = self.0.wait().unwrap().success();
        let mut out = String::new();
        let _ = self.0.stdout.take().unwrap().read_to_string(&mut out);
        let _ = self.0.stderr.take().unwrap().read_to_string(&mut out);
        (ok, out)
    }
}

impl Drop for RunningUml {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Gives the guest's eth0 `addr`, then waits (up to 20 s) until `peer` answers.
fn guest_up(addr: &str, peer: &str) -> String {
    format!(
        "ip addr add {addr}/24 dev eth0 && ip link set eth0 up || exit 2\n\
         i=0; until ping -c1 -W1 {peer} >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 20 ] || exit 3; done\n"
    )
}

#[test]
fn tap_is_created_addressed_pinged_through_and_removed() {
    if !can_make_namespaces() {
        return;
    }
    let ns = Netns::new("tap");
    let dir = UmlDir::new();
    // The guest pings the host side, then stays up for a ping from the host side.
    let script = format!(
        "{}ping -c2 192.0.2.1 && sleep 4",
        guest_up("192.0.2.2", "192.0.2.1")
    );
    let mut run = RunningUml::start(&ns, dir.path(), "tap:umltap0,host=192.0.2.1/24", &script);
    let deadline = Instant::now() + TIMEOUT;
    while !ns.ping("192.0.2.2") {
        assert!(
            run.running() && Instant::now() < deadline,
            "the host side never reached the guest:\n{}",
            run.finish().1
        );
        sleep(Duration::from_millis(200));
    }
    let (ok, out) = run.finish();
    assert!(ok && out.contains(" 0% packet loss"), "{out}");
    assert!(
        !ns.has_link("umltap0"),
        "the tap device umlkit created is still there after the guest ended"
    );
}

#[test]
fn an_existing_tap_is_used_and_kept() {
    if !can_make_namespaces() {
        return;
    }
    let ns = Netns::new("tapkeep");
    ip(&["-n", &ns.0, "tuntap", "add", "dev", "mytap", "mode", "tap"]);
    let dir = UmlDir::new();
    let (ok, out) =
        RunningUml::start(&ns, dir.path(), "tap:mytap", "ip -br link show dev eth0").finish();
    assert!(ok && out.contains("eth0"), "{out}");
    assert!(
        ns.has_link("mytap"),
        "uml run removed a tap device it did not create"
    );
}

/// Guests on two "hosts" joined by `tunnel_a` / `tunnel_b`: they ping each other, and guest A
/// runs iperf3 against guest B when `iperf` is set.
fn guests_on_two_hosts(tag: &str, tunnel_a: &str, tunnel_b: &str, iperf: bool) {
    let (host_a, host_b) = two_hosts(tag);
    let dir = UmlDir::new();
    let server = if iperf {
        "iperf3 -s -1 >/dev/null 2>&1 & sleep 0.3\n"
    } else {
        ""
    };
    let b_script = format!(
        "{server}{}ping -c3 192.0.2.1; {}",
        guest_up("192.0.2.2", "192.0.2.1"),
        if iperf { "wait" } else { "sleep 3" }
    );
    let b = RunningUml::start(&host_b, dir.path(), tunnel_b, &b_script);
    // A stays up until B's own pings are done (B starts them when it first reaches A, which
    // may be a moment after A did).
    let client = if iperf {
        "sleep 1; iperf3 -c 192.0.2.2 -t 2 -f m | tail -4\n"
    } else {
        "sleep 3\n"
    };
    let a_script = format!(
        "{}ping -c3 192.0.2.2 || exit 4\n{client}",
        guest_up("192.0.2.1", "192.0.2.2")
    );
    let a = RunningUml::start(&host_a, dir.path(), tunnel_a, &a_script);
    let (a_ok, a_out) = a.finish();
    let (b_ok, b_out) = b.finish();
    assert!(
        a_ok && b_ok && a_out.contains(" 0% packet loss") && b_out.contains(" 0% packet loss"),
        "guest A:\n{a_out}\nguest B:\n{b_out}"
    );
    if iperf {
        assert!(
            a_out.contains("receiver"),
            "iperf3 did not finish:\n{a_out}"
        );
        eprintln!("{tag}: iperf3 guest A -> guest B:\n{a_out}");
    }
}

#[test]
fn l2tpv3_joins_guests_on_two_hosts() {
    if !can_make_namespaces() {
        return;
    }
    guests_on_two_hosts(
        "l2tp",
        "l2tpv3:198.51.100.1:198.51.100.2:session=7",
        "l2tpv3:198.51.100.2:198.51.100.1:session=7",
        true,
    );
}

#[test]
fn gre_joins_guests_on_two_hosts() {
    if !can_make_namespaces() {
        return;
    }
    guests_on_two_hosts(
        "gre",
        "gre:198.51.100.1:198.51.100.2:key=7",
        "gre:198.51.100.2:198.51.100.1:key=7",
        false,
    );
}

/// `uml` outside any test namespace, with its temporary files in `tmp`.
fn uml_outside(uml_dir: &Path, tmp: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(uml_bin())
        .env("TMPDIR", tmp)
        .arg("--uml-dir")
        .arg(uml_dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn a_guest_in_a_network_namespace_is_controlled_from_outside_it() {
    if !can_make_namespaces() {
        return;
    }
    let ns = Netns::new("mc");
    let dir = UmlDir::new();
    let tmp = testkit::short_tempdir("umlkit-mctmp");
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.0, uml_bin(), "--uml-dir"])
        .arg(dir.path())
        .arg("run")
        .arg("--kernel")
        .arg(testkit::kernel())
        .args(["-m", "64M", "--umid", "inns", "--detach"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    dir.remember();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The mconsole client's reply address must reach across the namespace boundary.
    let (ok, version) = uml_outside(dir.path(), tmp.path(), &["version", "inns"]);
    assert!(
        ok && version.contains(testkit::kernel_release()),
        "{version}"
    );
    let (ok, list) = uml_outside(dir.path(), tmp.path(), &["list"]);
    assert!(
        ok && list.contains("inns") && !list.contains("not-responding"),
        "{list}"
    );
    let (ok, text) = uml_outside(dir.path(), tmp.path(), &["halt", "inns"]);
    assert!(ok, "{text}");
    // Every client removed its socket and private directory.
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left behind in $TMPDIR: {left:?}");
}

/// Kills and reaps a child process on drop.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `uml switch` serving `<dir>/<name>.bess`, once it is served.
fn start_switch(dir: &Path, name: &str) -> (ChildGuard, std::path::PathBuf) {
    let bess = dir.join(format!("{name}.bess"));
    let switch = ChildGuard(
        Command::new(uml_bin())
            .arg("switch")
            .arg("--unix")
            .arg(dir.join(format!("{name}.ctl")))
            .arg("--bess")
            .arg(&bess)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !uml::switch::bess::is_served(&bess) {
        assert!(Instant::now() < deadline, "the switch did not start");
        sleep(Duration::from_millis(20));
    }
    (switch, bess)
}

/// An uplink of the switch at `bess` over `spec`, from inside `ns`.
fn uplink(ns: &Netns, bess: &Path, spec: &str) -> uml::net::uplink::Uplink {
    let uml::net::Spec::L2tpv3(tunnel) = uml::net::Spec::parse(spec).unwrap() else {
        panic!("{spec} is not an l2tpv3 spec")
    };
    let bess = bess.to_owned();
    in_netns(ns, move || {
        uml::net::uplink::Uplink::l2tpv3(&bess, &tunnel).unwrap()
    })
}

/// Runs `f` on a thread that has entered `ns`'s network namespace (sockets it creates belong
/// to that namespace; threads it starts inherit it).
fn in_netns<T: Send + 'static>(ns: &Netns, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{}", ns.0);
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap();
        // SAFETY: a valid namespace descriptor; the call affects only this thread.
        let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .unwrap()
}

#[test]
fn a_switch_uplinks_over_l2tpv3_to_a_guest_on_another_host() {
    if !can_make_namespaces() {
        return;
    }
    let (host_a, host_b) = two_hosts("upl");
    let dir = UmlDir::new();
    let sockets = testkit::short_tempdir("umlkit-upl");
    let (_switch, bess) = start_switch(sockets.path(), "sw");
    // Host A: the switch, its uplink, and guest A on the switch. Host B: guest B on the tunnel.
    let uplink = uplink(&host_a, &bess, "l2tpv3:198.51.100.1:198.51.100.2:session=7");
    let b_script = format!(
        "{}ping -c3 192.0.2.1; sleep 3",
        guest_up("192.0.2.2", "192.0.2.1")
    );
    let b = RunningUml::start(
        &host_b,
        dir.path(),
        "l2tpv3:198.51.100.2:198.51.100.1:session=7",
        &b_script,
    );
    let a_script = format!(
        "{}ping -c3 192.0.2.2 && sleep 3",
        guest_up("192.0.2.1", "192.0.2.2")
    );
    let vec0 = format!("vec0:transport=bess,dst={}", bess.display());
    let a = RunningUml::start_with(&host_a, dir.path(), &["--arg", &vec0], &a_script);
    let (a_ok, a_out) = a.finish();
    let (b_ok, b_out) = b.finish();
    let stats = uplink.stop().unwrap();
    assert!(
        a_ok && b_ok && a_out.contains(" 0% packet loss") && b_out.contains(" 0% packet loss"),
        "guest A (on the switch):\n{a_out}\nguest B (on the tunnel):\n{b_out}\nuplink: {stats:?}"
    );
    assert!(stats.to_tunnel > 0 && stats.from_tunnel > 0, "{stats:?}");
}

#[test]
fn switches_on_two_hosts_join_through_an_uplink_on_each() {
    if !can_make_namespaces() {
        return;
    }
    let (host_a, host_b) = two_hosts("sw2");
    let dir = UmlDir::new();
    let sockets = testkit::short_tempdir("umlkit-sw2");
    let (_switch_a, bess_a) = start_switch(sockets.path(), "a");
    let (_switch_b, bess_b) = start_switch(sockets.path(), "b");
    let up_a = uplink(
        &host_a,
        &bess_a,
        "l2tpv3:198.51.100.1:198.51.100.2:session=9",
    );
    let up_b = uplink(
        &host_b,
        &bess_b,
        "l2tpv3:198.51.100.2:198.51.100.1:session=9",
    );
    let port = |bess: &Path| format!("vec0:transport=bess,dst={}", bess.display());
    let b_script = format!(
        "iperf3 -s -1 >/dev/null 2>&1 & sleep 0.3\n{}ping -c3 192.0.2.1; wait",
        guest_up("192.0.2.2", "192.0.2.1")
    );
    let b = RunningUml::start_with(&host_b, dir.path(), &["--arg", &port(&bess_b)], &b_script);
    let a_script = format!(
        "{}ping -c3 192.0.2.2 || exit 4\nsleep 1; iperf3 -c 192.0.2.2 -t 2 -f m | tail -4",
        guest_up("192.0.2.1", "192.0.2.2")
    );
    let a = RunningUml::start_with(&host_a, dir.path(), &["--arg", &port(&bess_a)], &a_script);
    let (a_ok, a_out) = a.finish();
    let (b_ok, b_out) = b.finish();
    let (stats_a, stats_b) = (up_a.stop().unwrap(), up_b.stop().unwrap());
    assert!(
        a_ok && b_ok && a_out.contains(" 0% packet loss") && b_out.contains(" 0% packet loss"),
        "guest A:\n{a_out}\nguest B:\n{b_out}\nuplinks: {stats_a:?} {stats_b:?}"
    );
    assert!(
        a_out.contains("receiver"),
        "iperf3 did not finish:\n{a_out}"
    );
    eprintln!("switch to switch over two uplinks, iperf3 A -> B:\n{a_out}");
}

#[test]
fn uml_uplink_relays_until_a_signal_and_reports_what_it_relayed() {
    if !can_make_namespaces() {
        return;
    }
    let (host_a, host_b) = two_hosts("cli");
    let dir = UmlDir::new();
    let sockets = testkit::short_tempdir("umlkit-cli");
    let (_switch, bess) = start_switch(sockets.path(), "sw");
    let mut uplink = ChildGuard(
        Command::new("ip")
            .args(["netns", "exec", &host_a.0, uml_bin(), "uplink"])
            .arg(&bess)
            .arg("l2tpv3:198.51.100.1:198.51.100.2:session=3")
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let b_script = format!(
        "{}ping -c3 192.0.2.1; sleep 3",
        guest_up("192.0.2.2", "192.0.2.1")
    );
    let b = RunningUml::start(
        &host_b,
        dir.path(),
        "l2tpv3:198.51.100.2:198.51.100.1:session=3",
        &b_script,
    );
    let port = format!("vec0:transport=bess,dst={}", bess.display());
    let a_script = format!(
        "{}ping -c3 192.0.2.2 && sleep 3",
        guest_up("192.0.2.1", "192.0.2.2")
    );
    let a = RunningUml::start_with(&host_a, dir.path(), &["--arg", &port], &a_script);
    let (a_ok, a_out) = a.finish();
    let (b_ok, b_out) = b.finish();
    // `ip netns exec` execs uml in place: the pid is uml's.
    let pid = nix::unistd::Pid::from_raw(uplink.0.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = uplink.0.wait().unwrap();
    let mut err = String::new();
    let _ = uplink.0.stderr.take().unwrap().read_to_string(&mut err);
    assert!(
        a_ok && b_ok && a_out.contains(" 0% packet loss"),
        "guest A:\n{a_out}\nguest B:\n{b_out}\nuplink:\n{err}"
    );
    assert!(status.success(), "{err}");
    assert!(err.contains("uplink stopped: "), "{err}");
    assert!(!err.contains("stopped: 0 frames"), "{err}");
}

/// `args` run as user nobody (uid 65534) in namespace `ns`: (success, stderr).
fn as_nobody(ns: &Netns, args: &[&str]) -> (bool, String) {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.0,
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
        ])
        .args(["--clear-groups", "env", "HOME=/tmp"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_normal_user_is_told_which_commands_make_the_tap_device() {
    if !can_make_namespaces() {
        return;
    }
    let ns = Netns::new("nobody");
    // A kernel that user nobody can run (the profile is read before anything else).
    let kernel = [testkit::kernel(), "/usr/bin/linux".into()]
        .into_iter()
        .find(|k| as_nobody(&ns, &["test", "-x", &k.to_string_lossy()]).0);
    let bin_ok = as_nobody(&ns, &["test", "-x", uml_bin()]).0;
    let (Some(kernel), true) = (kernel, bin_ok) else {
        eprintln!("skipped: user nobody can run neither the uml binary nor a UML kernel here");
        return;
    };
    let dir = testkit::short_tempdir("umlkit-nb");
    let uml_dir = dir.path().join("u");
    let (ok, err) = as_nobody(
        &ns,
        &[
            uml_bin(),
            "--uml-dir",
            &uml_dir.to_string_lossy(),
            "run",
            "--kernel",
            &kernel.to_string_lossy(),
            "--net",
            "tap:umlnb0,host=192.0.2.1/24",
            "--",
            "true",
        ],
    );
    assert!(!ok, "{err}");
    assert!(
        err.contains("only root can create one")
            && err.contains("sudo ip tuntap add dev umlnb0 mode tap user nobody")
            && err.contains("sudo ip addr add 192.0.2.1/24 dev umlnb0")
            && err.contains("nothing was started"),
        "{err}"
    );
    assert!(!ns.has_link("umlnb0"));
}
