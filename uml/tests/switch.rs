//! `uml switch` and `uml::switch` with real UML guests on the `daemon` transport.
//!
//! Guests get `eth0=daemon,<mac>,unix,<ctl>`, bring the link up with an address from
//! 192.0.2.0/24 and ping each other; the host's iproute2 and ping are visible in the guest
//! through its hostfs root.
//!
//! Only kernels with the legacy `daemon` transport (`CONFIG_UML_NET_DAEMON`, as Debian's 6.1)
//! can be guests of this switch: 7.x has only the vector driver, and an `eth0=` it does not
//! know creates no interface. There the guest parts check nothing and say so
//! ([`daemon_guests`]); the parts that speak the protocol from this process still run.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{JoinHandle, sleep};
use std::time::{Duration, Instant};

use testkit::{Guest, GuestBuilder, short_tempdir};
use uml::switch::request::{self, RequestVersion};
use uml::switch::{
    DataSocket, PeerAddr, Request, Switch, SwitchError, SwitchHandle, SwitchOptions, SwitchStats,
    is_served,
};

const PING_TIMEOUT: Duration = Duration::from_secs(90);

fn uml_bin() -> &'static str {
    env!("CARGO_BIN_EXE_uml")
}

/// A switch served by a thread of this test process; stopped and joined on drop.
struct InProcess {
    handle: SwitchHandle,
    /// The shared data address (where clients without a reply send).
    data_addr: PeerAddr,
    thread: Option<JoinHandle<Result<SwitchStats, SwitchError>>>,
    ctl: PathBuf,
    _dir: tempfile::TempDir,
}

impl InProcess {
    fn start(opts: SwitchOptions) -> InProcess {
        let dir = short_tempdir("umlkit-sw");
        let ctl = dir.path().join("ctl");
        let switch = Switch::bind(&ctl, opts).expect("switch binds");
        let handle = switch.handle();
        let data_addr = switch.data_address();
        let thread = std::thread::spawn(move || switch.serve());
        InProcess {
            handle,
            data_addr,
            thread: Some(thread),
            ctl,
            _dir: dir,
        }
    }

    fn ctl(&self) -> &str {
        self.ctl.to_str().unwrap()
    }

    fn stop(mut self) -> SwitchStats {
        self.handle.stop();
        self.thread
            .take()
            .unwrap()
            .join()
            .unwrap()
            .expect("serve ends cleanly")
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.handle.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn mac(i: u8) -> String {
    format!("fe:fd:c0:00:02:{i:02x}")
}

fn mac_bytes(i: u8) -> [u8; 6] {
    [0xfe, 0xfd, 0xc0, 0, 2, i]
}

/// A guest with address 192.0.2.`me` that waits for 192.0.2.`peer` to answer, then pings it
/// three times, prints `PING_RESULT=<status>` and stays up so others can ping it.
fn pinger(ctl: &str, me: u8, peer: u8) -> GuestBuilder {
    let eth = format!("eth0=daemon,{},unix,{ctl}", mac(me));
    guest_with(&eth, me, peer)
}

fn guest_with(eth: &str, me: u8, peer: u8) -> GuestBuilder {
    GuestBuilder::new("sw").arg(eth).body(&format!(
        "export PATH=/usr/sbin:/usr/bin:/sbin:/bin
ip link set eth0 up
ip addr add 192.0.2.{me}/24 dev eth0
n=0
while [ $n -lt 40 ] && ! ping -c 1 -W 1 192.0.2.{peer} >/dev/null 2>&1; do n=$((n+1)); done
ping -c 3 -W 2 192.0.2.{peer}
echo PING_RESULT=$?
while :; do sleep 1; done"
    ))
}

/// Whether the kernel under test can attach guests to this switch (it has the `daemon`
/// transport). When it cannot, prints one line saying that `test` checked nothing with guests
/// on this kernel.
fn daemon_guests(test: &str) -> bool {
    let kernel = uml::kernel::resolve(None).expect("a UML kernel to test with");
    let profile = uml::kernel::Profile::read(&kernel).expect("the kernel's profile");
    if profile.has("UML_NET_DAEMON") {
        return true;
    }
    println!(
        "{test}: kernel {} ({}) has no daemon transport (CONFIG_UML_NET_DAEMON): checked nothing with guests",
        profile.release,
        kernel.display()
    );
    false
}

fn boot(b: GuestBuilder) -> Guest {
    b.boot()
        .unwrap_or_else(|e| panic!("guest did not boot: {e}"))
}

/// The guest's three pings all came back.
fn assert_pinged(guest: &Guest) {
    guest.wait_for_log("PING_RESULT=", PING_TIMEOUT).unwrap();
    let log = guest.log();
    assert!(
        log.contains("PING_RESULT=0") && log.contains(" 0% packet loss"),
        "guest {} could not ping its peer; log tail:\n{}",
        guest.umid(),
        guest.log_tail(30)
    );
}

fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        sleep(Duration::from_millis(20));
    }
}

fn fresh_addr() -> PeerAddr {
    static N: AtomicU32 = AtomicU32::new(1);
    PeerAddr::abstract_from_pid(
        std::process::id(),
        0x7700_0000 + N.fetch_add(1, Ordering::Relaxed),
    )
}

/// A port this test registers itself, recording every frame the switch sends it.
struct RawPort {
    ctl: UnixStream,
    data: Arc<DataSocket>,
    switch_addr: PeerAddr,
    frames: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
    collector: Option<JoinHandle<()>>,
}

impl RawPort {
    fn register(ctl: &str) -> RawPort {
        let addr = fresh_addr();
        let data = Arc::new(DataSocket::bind(&addr).unwrap());
        let mut stream = UnixStream::connect(ctl).unwrap();
        stream.write_all(&request::encode_v3(&addr)).unwrap();
        let reply = read_reply(&mut stream);
        assert_eq!(reply.len(), request::REPLY_LEN, "reply length");
        let switch_addr = PeerAddr::from_sockaddr(&reply).unwrap();
        let frames = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let collector = {
            let (data, frames, stop) = (data.clone(), frames.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    match data.recv_from(&mut buf) {
                        Ok((n, _)) => frames.lock().unwrap().push(buf[..n.min(2048)].to_vec()),
                        Err(_) => sleep(Duration::from_millis(1)),
                    }
                }
            })
        };
        RawPort {
            ctl: stream,
            data,
            switch_addr,
            frames,
            stop,
            collector: Some(collector),
        }
    }

    fn ethertypes(&self) -> Vec<u16> {
        self.frames
            .lock()
            .unwrap()
            .iter()
            .filter(|f| f.len() >= 14)
            .map(|f| u16::from_be_bytes([f[12], f[13]]))
            .collect()
    }
}

impl Drop for RawPort {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(c) = self.collector.take() {
            let _ = c.join();
        }
    }
}

/// Read the switch's reply: up to 110 bytes, or fewer if it hangs up.
fn read_reply(stream: &mut UnixStream) -> Vec<u8> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reply = Vec::new();
    let mut buf = [0u8; 256];
    while reply.len() < request::REPLY_LEN {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => reply.extend_from_slice(&buf[..n]),
            Err(e) => panic!("reading the reply failed: {e}"),
        }
    }
    reply
}

/// The switch hung up on this control connection (read gives EOF) within `timeout`.
fn closed_by_switch(stream: &mut UnixStream, timeout: Duration) -> bool {
    stream.set_read_timeout(Some(timeout)).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn two_guests_ping_each_other_through_the_switch() {
    if !daemon_guests("two_guests_ping_each_other_through_the_switch") {
        return;
    }
    let sw = InProcess::start(SwitchOptions::default());
    let a = boot(pinger(sw.ctl(), 1, 2));
    let b = boot(pinger(sw.ctl(), 2, 1));
    assert_pinged(&a);
    assert_pinged(&b);
    let stats = sw.handle.stats();
    assert_eq!(stats.ports, 2);
    assert!(stats.frames_received > 0);
    drop((a, b));
    let stats = sw.stop();
    assert_eq!(stats.dropped(), 0, "{stats:?}");
}

/// A `uml switch --daemon` process: stopped with SIGTERM on drop.
struct DaemonSwitch {
    pid: i32,
    ctl: PathBuf,
    pid_file: PathBuf,
}

impl DaemonSwitch {
    fn start(dir: &Path, extra: &[&str], wrapper: &[&str]) -> DaemonSwitch {
        let ctl = dir.join("ctl");
        let pid_file = dir.join("switch.pid");
        let mut cmd = Command::new(wrapper.first().copied().unwrap_or(uml_bin()));
        if !wrapper.is_empty() {
            cmd.args(&wrapper[1..]).arg(uml_bin());
        }
        let out = cmd
            .arg("switch")
            .arg("--unix")
            .arg(&ctl)
            .arg("--daemon")
            .arg("--pid-file")
            .arg(&pid_file)
            .args(extra)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "uml switch --daemon failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .expect("pid file written before the parent exits")
            .trim()
            .parse()
            .unwrap();
        let sw = DaemonSwitch { pid, ctl, pid_file };
        // The parent exits only once the socket listens.
        assert!(
            is_served(&sw.ctl),
            "control socket not served after --daemon returned"
        );
        sw
    }

    fn ctl(&self) -> &str {
        self.ctl.to_str().unwrap()
    }

    fn terminate(&self) {
        // SAFETY: kill(2) only sends a signal.
        unsafe {
            libc::kill(self.pid, libc::SIGTERM);
        }
    }
}

impl Drop for DaemonSwitch {
    fn drop(&mut self) {
        self.terminate();
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.ctl.exists() && Instant::now() < deadline {
            sleep(Duration::from_millis(20));
        }
        // SAFETY: kill(2) only sends a signal.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
        }
    }
}

#[test]
fn three_guests_ping_each_other_through_the_daemonized_binary() {
    if !daemon_guests("three_guests_ping_each_other_through_the_daemonized_binary") {
        return;
    }
    let dir = short_tempdir("umlkit-sw");
    let sw = DaemonSwitch::start(dir.path(), &[], &[]);
    let a = boot(pinger(sw.ctl(), 1, 2));
    let b = boot(pinger(sw.ctl(), 2, 3));
    let c = boot(pinger(sw.ctl(), 3, 1));
    assert_pinged(&a);
    assert_pinged(&b);
    assert_pinged(&c);
    drop((a, b, c));
    sw.terminate();
    wait_until(
        "SIGTERM to remove the control socket",
        Duration::from_secs(5),
        || !sw.ctl.exists(),
    );
    wait_until("the pid file to go", Duration::from_secs(5), || {
        !sw.pid_file.exists()
    });
}

#[test]
fn a_guest_leaves_and_another_joins() {
    if !daemon_guests("a_guest_leaves_and_another_joins") {
        return;
    }
    let sw = InProcess::start(SwitchOptions::default());
    let a = boot(pinger(sw.ctl(), 1, 2));
    let b = boot(pinger(sw.ctl(), 2, 1));
    assert_pinged(&a);
    assert_pinged(&b);
    drop(b);
    wait_until(
        "the departed guest's port to be removed",
        Duration::from_secs(10),
        || sw.handle.stats().ports == 1,
    );
    let c = boot(pinger(sw.ctl(), 3, 1));
    assert_pinged(&c);
    let stats = sw.handle.stats();
    assert_eq!(
        (stats.ports, stats.ports_registered, stats.ports_removed),
        (2, 3, 1)
    );
}

#[test]
fn hub_mode_floods_unicast_frames_to_every_port() {
    if !daemon_guests("hub_mode_floods_unicast_frames_to_every_port") {
        return;
    }
    let sw = InProcess::start(SwitchOptions {
        hub: true,
        ..SwitchOptions::default()
    });
    let raw = RawPort::register(sw.ctl());
    let a = boot(pinger(sw.ctl(), 1, 2));
    let b = boot(pinger(sw.ctl(), 2, 1));
    assert_pinged(&a);
    assert_pinged(&b);
    let ipv4 = raw.ethertypes().iter().filter(|&&t| t == 0x0800).count();
    assert!(
        ipv4 >= 6,
        "a hub port saw only {ipv4} IPv4 frames of the guests' pings"
    );
}

#[test]
fn switch_mode_sends_unicast_to_a_learned_address_only_to_its_port() {
    if !daemon_guests("switch_mode_sends_unicast_to_a_learned_address_only_to_its_port") {
        return;
    }
    let sw = InProcess::start(SwitchOptions::default());
    let raw = RawPort::register(sw.ctl());
    let a = boot(pinger(sw.ctl(), 1, 2));
    let b = boot(pinger(sw.ctl(), 2, 1));
    assert_pinged(&a);
    assert_pinged(&b);
    let types = raw.ethertypes();
    assert!(
        types.contains(&0x0806),
        "the third port never saw the ARP broadcasts: {types:x?}"
    );
    assert!(
        !types.contains(&0x0800),
        "unicast IPv4 between learned guests leaked to a third port: {types:x?}"
    );
}

#[test]
fn a_second_switch_on_a_live_socket_is_refused_and_a_stale_socket_is_replaced() {
    let dir = short_tempdir("umlkit-sw");
    let ctl = dir.path().join("ctl");
    let first = Switch::bind(&ctl, SwitchOptions::default()).unwrap();
    assert!(is_served(&ctl));
    match Switch::bind(&ctl, SwitchOptions::default()) {
        Err(SwitchError::AlreadyServed(p)) => assert_eq!(p, ctl),
        other => panic!("second bind: {other:?}"),
    }
    let out = Command::new(uml_bin())
        .args(["switch", "--unix"])
        .arg(&ctl)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("served by another switch"), "{stderr}");
    assert!(is_served(&ctl), "the refused switch disturbed the live one");
    drop(first);
    assert!(!ctl.exists(), "a dropped switch left its socket file");

    // A socket file nobody serves is stale: replaced.
    drop(UnixListener::bind(&ctl).unwrap());
    assert!(ctl.exists() && !is_served(&ctl));
    let sw = Switch::bind(&ctl, SwitchOptions::default()).unwrap();
    assert!(is_served(&ctl));
    drop(sw);

    // Something that is not a socket is never removed.
    std::fs::write(&ctl, b"precious").unwrap();
    assert!(matches!(
        Switch::bind(&ctl, SwitchOptions::default()),
        Err(SwitchError::NotASocket(_))
    ));
    assert_eq!(std::fs::read(&ctl).unwrap(), b"precious");
}

#[test]
fn malformed_requests_never_crash_or_block_the_switch() {
    let sw = InProcess::start(SwitchOptions {
        request_timeout: Duration::from_secs(1),
        ..SwitchOptions::default()
    });
    let connect = || UnixStream::connect(sw.ctl()).unwrap();
    let good = request::encode_v3(&fresh_addr());

    // Says nothing at all (left open while everything else happens).
    let mut silent = connect();
    // Starts a request, then goes quiet.
    let mut partial = connect();
    partial.write_all(&good[..10]).unwrap();
    // Wrong magic, first word not REQ_NEW_CONTROL.
    let mut wrong_magic = connect();
    wrong_magic
        .write_all(&[0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4])
        .unwrap();
    // Version 2 and an unknown version.
    let mut v2 = connect();
    let mut bytes = good;
    bytes[4..8].copy_from_slice(&2u32.to_ne_bytes());
    v2.write_all(&bytes).unwrap();
    let mut v9 = connect();
    bytes[4..8].copy_from_slice(&9u32.to_ne_bytes());
    v9.write_all(&bytes).unwrap();
    // A short read followed by a hang-up.
    {
        let mut short = connect();
        short.write_all(&good[..50]).unwrap();
    }
    // Lots of garbage.
    let mut flood = connect();
    let _ = flood.write_all(&[0x5a; 64 * 1024]);
    // Garbage right after a valid request (in the same write), and after registration.
    let trailing_addr = fresh_addr();
    let _trailing_sock = DataSocket::bind(&trailing_addr).unwrap();
    let mut trailing = connect();
    let mut with_tail = request::encode_v3(&trailing_addr).to_vec();
    with_tail.extend_from_slice(b"garbage");
    trailing.write_all(&with_tail).unwrap();
    let raw = RawPort::register(sw.ctl());
    let mut registered = raw.ctl.try_clone().unwrap();
    registered.write_all(b"and now some garbage").unwrap();

    for (name, stream) in [
        ("wrong magic", &mut wrong_magic),
        ("version 2", &mut v2),
        ("version 9", &mut v9),
        ("garbage flood", &mut flood),
        ("trailing garbage", &mut trailing),
        ("garbage after registration", &mut registered),
        ("partial request", &mut partial),
        ("silent client", &mut silent),
    ] {
        assert!(
            closed_by_switch(stream, Duration::from_secs(10)),
            "{name}: not closed"
        );
    }
    wait_until(
        "the garbage-sending ports to be removed",
        Duration::from_secs(5),
        || sw.handle.stats().ports == 0,
    );

    // Frames that are too long, too short, or from nobody are dropped and counted.
    let stranger = DataSocket::bind(&fresh_addr()).unwrap();
    assert!(
        stranger.send_to(&[0x02; 60], &raw.switch_addr).is_err(),
        "a port's data socket took a frame from someone other than its client"
    );
    stranger.send_to(&[0x02; 60], &sw.data_addr).unwrap();
    let ok = RawPort::register(sw.ctl());
    ok.data.send_to(&[0x02; 2000], &ok.switch_addr).unwrap();
    ok.data.send_to(&[0x02; 9], &ok.switch_addr).unwrap();
    wait_until(
        "the bad frames to be counted",
        Duration::from_secs(5),
        || {
            let s = sw.handle.stats();
            s.dropped_unknown_sender >= 1 && s.dropped_oversize >= 1 && s.dropped_runt >= 1
        },
    );
    drop(ok);

    // The old request layouts are still accepted: v1 with a reply, v0 without.
    for version in [RequestVersion::V1, RequestVersion::V0] {
        let addr = fresh_addr();
        let _sock = DataSocket::bind(&addr).unwrap();
        let mut s = connect();
        let before = sw.handle.stats().ports_registered;
        s.write_all(
            &Request {
                version,
                mac: Some(mac_bytes(9)),
                addr,
            }
            .encode(),
        )
        .unwrap();
        if version == RequestVersion::V1 {
            assert_eq!(read_reply(&mut s).len(), request::REPLY_LEN);
        }
        wait_until(
            "the old-layout port to register",
            Duration::from_secs(5),
            || sw.handle.stats().ports_registered > before,
        );
    }

    assert!(
        sw.handle.stats().requests_refused >= 7,
        "{:?}",
        sw.handle.stats()
    );

    // And real guests still work.
    if !daemon_guests("malformed_requests_never_crash_or_block_the_switch") {
        return;
    }
    let a = boot(pinger(sw.ctl(), 1, 2));
    let b = boot(pinger(sw.ctl(), 2, 1));
    assert_pinged(&a);
    assert_pinged(&b);
}

#[test]
fn pcap_capture_is_readable_by_tcpdump_and_holds_the_icmp_frames() {
    if !daemon_guests("pcap_capture_is_readable_by_tcpdump_and_holds_the_icmp_frames") {
        return;
    }
    let dir = short_tempdir("umlkit-sw");
    let pcap = dir.path().join("capture.pcap");
    let sw = InProcess::start(SwitchOptions {
        pcap: Some(pcap.clone()),
        ..SwitchOptions::default()
    });
    let a = boot(pinger(sw.ctl(), 1, 2));
    let b = boot(pinger(sw.ctl(), 2, 1));
    assert_pinged(&a);
    assert_pinged(&b);
    drop((a, b));
    sw.stop();
    let out = Command::new("tcpdump")
        .arg("-nn")
        .arg("-e")
        .arg("-r")
        .arg(&pcap)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "tcpdump -r failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("192.0.2.1 > 192.0.2.2: ICMP echo request"),
        "{text}"
    );
    assert!(
        text.contains("192.0.2.2 > 192.0.2.1: ICMP echo reply"),
        "{text}"
    );
    assert!(text.contains(&mac(1)), "{text}");
}

/// A network namespace this test creates; deleted on drop.
struct Netns(String);

impl Netns {
    fn create() -> Netns {
        let name = format!("umlkit-t{}", std::process::id());
        ip(&["netns", "add", &name]);
        Netns(name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// `ip ARGS`, which must succeed.
fn ip(args: &[&str]) {
    testkit::run(Command::new("ip").args(args));
}

#[test]
fn tap_port_bridges_a_guest_to_a_host_tap_device_in_a_network_namespace() {
    if !daemon_guests("tap_port_bridges_a_guest_to_a_host_tap_device_in_a_network_namespace") {
        return;
    }
    let ns = Netns::create();
    let n = ns.0.as_str();
    ip(&[
        "netns", "exec", n, "ip", "tuntap", "add", "dev", "tap0", "mode", "tap",
    ]);
    ip(&["-n", n, "addr", "add", "192.0.2.254/24", "dev", "tap0"]);
    ip(&["-n", n, "link", "set", "tap0", "up"]);
    let dir = short_tempdir("umlkit-sw");
    let sw = DaemonSwitch::start(dir.path(), &["--tap", "tap0"], &["ip", "netns", "exec", n]);
    // Abstract unix addresses belong to a network namespace, so the guest must live in the
    // switch's namespace too: boot it from a thread that entered it (setns is per thread, and
    // the kernel process inherits the thread's namespace). The guest's whole life stays in
    // that thread: testkit sets PR_SET_PDEATHSIG, which fires when the spawning thread ends.
    let ns_path = format!("/var/run/netns/{n}");
    let builder = pinger(sw.ctl(), 1, 254);
    std::thread::spawn(move || {
        let f = std::fs::File::open(&ns_path).unwrap();
        // SAFETY: setns only switches this thread's network namespace; f is an open nsfs fd.
        let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        let guest = boot(builder);
        assert_pinged(&guest);
    })
    .join()
    .expect("the guest in the namespace pinged the tap device");
    drop(sw);
}

/// A real uml_switch on a control socket; killed on drop.
struct UmlSwitch(Child);

impl Drop for UmlSwitch {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_uml_switch(ctl: &Path) -> UmlSwitch {
    let child = Command::new("uml_switch")
        .arg("-unix")
        .arg(ctl)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("uml_switch runs");
    let sw = UmlSwitch(child);
    wait_until("uml_switch to listen", Duration::from_secs(5), || {
        is_served(ctl)
    });
    sw
}

#[test]
fn uml_switch_and_our_switch_answer_the_kernels_request_alike() {
    let dir = short_tempdir("umlkit-sw");
    let theirs_ctl = dir.path().join("theirs.ctl");
    let theirs = start_uml_switch(&theirs_ctl);
    let ours = InProcess::start(SwitchOptions::default());
    for ctl in [theirs_ctl.to_str().unwrap(), ours.ctl()] {
        let addr = fresh_addr();
        let sock = DataSocket::bind(&addr).unwrap();
        let mut s = UnixStream::connect(ctl).unwrap();
        s.write_all(&request::encode_v3(&addr)).unwrap();
        let reply = read_reply(&mut s);
        assert_eq!(reply.len(), 110, "{ctl}: reply length");
        let data = PeerAddr::from_sockaddr(&reply).unwrap();
        assert!(data.is_abstract(), "{ctl}: data address {data:?}");
        // The advertised address takes frames sent with the full 110-byte length.
        sock.send_to(&[0xff; 60], &data).unwrap();
    }
    // And the kernel's own request works with both: guests ping through uml_switch too.
    if !daemon_guests("uml_switch_and_our_switch_answer_the_kernels_request_alike") {
        return;
    }
    let a = boot(pinger(theirs_ctl.to_str().unwrap(), 1, 2));
    let b = boot(pinger(theirs_ctl.to_str().unwrap(), 2, 1));
    assert_pinged(&a);
    assert_pinged(&b);
    drop((a, b, theirs));
}

#[test]
fn sigint_stops_a_foreground_switch_and_removes_its_control_socket() {
    let dir = short_tempdir("umlkit-sw");
    let ctl = dir.path().join("ctl");
    let child = Command::new(uml_bin())
        .args(["switch", "--unix"])
        .arg(&ctl)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = UmlSwitch(child);
    wait_until("the switch to listen", Duration::from_secs(10), || {
        is_served(&ctl)
    });
    // SAFETY: kill(2) only sends a signal.
    unsafe {
        libc::kill(child.0.id() as i32, libc::SIGINT);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the switch ignored SIGINT");
        sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    assert!(!ctl.exists(), "the control socket survived SIGINT");
}

/// The uid and gid of `umlkit-swtest`, an unprivileged user created here if missing (the test
/// needs root, as CI runs it, and python3, which scripts/install-deps installs).
fn unprivileged_user() -> (u32, u32) {
    testkit::second_user("umlkit-swtest")
}

fn path_addr(path: &Path) -> PeerAddr {
    use std::os::unix::ffi::OsStrExt;
    let mut bytes = [0u8; 108];
    let p = path.as_os_str().as_bytes();
    bytes[..p.len()].copy_from_slice(p);
    PeerAddr::from_path_bytes(bytes)
}

/// Run by the second user: register a port for the root-owned socket (argv 3, a request in
/// hex), then one for a socket of its own (argv 2, request argv 4), and wait for a frame on it.
const SECOND_USER_CLIENT: &str = r#"
import socket, sys
ctl, own = sys.argv[1], sys.argv[2]
def register(req):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(ctl)
    s.sendall(bytes.fromhex(req))
    s.settimeout(5)
    r = b""
    try:
        while len(r) < 110:
            c = s.recv(256)
            if not c:
                break
            r += c
    except socket.timeout:
        pass
    return s, len(r) == 110
d = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
d.bind(own)
v, ok = register(sys.argv[3])
print("victim", "accepted" if ok else "refused", flush=True)
o, ok = register(sys.argv[4])
print("own", "accepted" if ok else "refused", flush=True)
d.settimeout(10)
try:
    d.recv(2048)
    print("frame", flush=True)
except socket.timeout:
    print("noframe", flush=True)
"#;

#[test]
fn a_port_for_another_users_socket_is_refused_and_one_for_the_peers_own_is_served() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let (uid, gid) = unprivileged_user();
    let sw = InProcess::start(SwitchOptions {
        control_mode: Some(0o777),
        ..SwitchOptions::default()
    });
    let dir = sw.ctl.parent().unwrap().to_owned();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    // A root socket anyone may write to: only its owner may be a port's data address.
    let victim_path = dir.join("victim");
    let victim = std::os::unix::net::UnixDatagram::bind(&victim_path).unwrap();
    victim.set_nonblocking(true).unwrap();
    std::fs::set_permissions(&victim_path, std::fs::Permissions::from_mode(0o777)).unwrap();
    let user_dir = dir.join("user");
    std::fs::create_dir(&user_dir).unwrap();
    nix::unistd::chown(&user_dir, Some(uid.into()), Some(gid.into())).unwrap();
    let own = user_dir.join("own");
    let hex = |p: &Path| -> String {
        request::encode_v3(&path_addr(p))
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let mut client = Command::new("python3")
        .arg("-c")
        .arg(SECOND_USER_CLIENT)
        .arg(&sw.ctl)
        .arg(&own)
        .arg(hex(&victim_path))
        .arg(hex(&own))
        .uid(uid)
        .gid(gid)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(client.stdout.take().unwrap()));
    let mut said = Vec::new();
    for _ in 0..2 {
        said.push(lines.next().and_then(Result::ok).unwrap_or_default());
    }
    // Broadcasts from a root port reach every port, so a port on the victim would get them.
    let sender = RawPort::register(sw.ctl());
    let broadcast = {
        let mut f = vec![0u8; 60];
        f[0..6].copy_from_slice(&[0xff; 6]);
        f[6..12].copy_from_slice(&mac_bytes(9));
        f[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
        f
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while client.try_wait().unwrap().is_none() && Instant::now() < deadline {
        let _ = sender.data.send_to(&broadcast, &sender.switch_addr);
        sleep(Duration::from_millis(50));
    }
    let _ = client.kill();
    let _ = client.wait();
    said.extend(lines.map_while(Result::ok));
    assert_eq!(
        said,
        ["victim refused", "own accepted", "frame"],
        "the second user's client said"
    );
    let mut buf = [0u8; 2048];
    assert!(
        victim.recv(&mut buf).is_err(),
        "the switch sent a frame to root's socket"
    );
    let stats = sw.stop();
    assert!(stats.requests_refused >= 1, "{stats:?}");
}

#[test]
fn silent_control_connections_never_stop_a_guest_from_joining() {
    let sw = InProcess::start(SwitchOptions::default());
    // More connections that say nothing than the switch keeps waiting for requests.
    let silent: Vec<UnixStream> = (0..150)
        .map(|_| UnixStream::connect(sw.ctl()).unwrap())
        .collect();
    wait_until(
        "the switch to accept the silent connections",
        Duration::from_secs(10),
        || sw.handle.stats().requests_refused >= 150 - 64,
    );
    // A client that sends its request at once, as the kernel does, still gets its port.
    let port = RawPort::register(sw.ctl());
    wait_until("the port to be attached", Duration::from_secs(5), || {
        sw.handle.stats().ports == 1
    });
    drop(port);
    drop(silent);
}
