//! `uml switch` and `uml::switch` with real UML guests on the vector driver's `bess` transport,
//! the only rootless network 7.x kernels have.
//!
//! Guests get `vec0:transport=bess,mac=<mac>,dst=<bess socket>`, bring `vec0` up with an
//! address from the private 10.0.0.0/24 and ping each other; the host's iproute2 and ping are
//! visible in the guest through its hostfs root. Tests skip (with a note) on a kernel without
//! the vector driver.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{JoinHandle, sleep};
use std::time::{Duration, Instant};

use testkit::{Guest, GuestBuilder, UmlDir, short_tempdir};
use uml::switch::bess::SeqPacket;
use uml::switch::{Switch, SwitchError, SwitchHandle, SwitchOptions, SwitchStats};

const PING_TIMEOUT: Duration = Duration::from_secs(90);

fn uml_bin() -> &'static str {
    env!("CARGO_BIN_EXE_uml")
}

/// Whether the test kernel has the vector driver; prints why a test is skipped if not.
fn vector_kernel() -> bool {
    let kernel = testkit::kernel();
    let path = if kernel.components().count() == 1 && !kernel.exists() {
        uml::kernel::on_path(&kernel.to_string_lossy()).unwrap_or(kernel)
    } else {
        kernel
    };
    let ok = uml::kernel::Profile::read(&path).is_ok_and(|p| p.has("UML_NET_VECTOR"));
    if !ok {
        eprintln!("skipped: {} has no vector network driver", path.display());
    }
    ok
}

/// A switch with a bess socket, served by a thread of this test process; stopped and joined
/// on drop.
struct InProcess {
    handle: SwitchHandle,
    thread: Option<JoinHandle<Result<SwitchStats, SwitchError>>>,
    bess: PathBuf,
    _dir: tempfile::TempDir,
}

impl InProcess {
    fn start(opts: SwitchOptions) -> InProcess {
        let dir = short_tempdir("umlkit-sb");
        let bess = dir.path().join("bess");
        let switch = Switch::bind(
            &dir.path().join("ctl"),
            SwitchOptions {
                bess: Some(bess.clone()),
                ..opts
            },
        )
        .expect("switch binds");
        let handle = switch.handle();
        let thread = std::thread::spawn(move || switch.serve());
        InProcess {
            handle,
            thread: Some(thread),
            bess,
            _dir: dir,
        }
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
    format!("fe:fd:0a:00:00:{i:02x}")
}

/// The guest's side of its pings: address 10.0.0.`me` on vec0, wait for 10.0.0.`peer` to
/// answer, ping it three times, print `PING_RESULT=<status>`.
fn ping_script(me: u8, peer: u8) -> String {
    format!(
        "export PATH=/usr/sbin:/usr/bin:/sbin:/bin
ip addr add 10.0.0.{me}/24 dev vec0
ip link set vec0 up
n=0
while [ $n -lt 40 ] && ! ping -c 1 -W 1 10.0.0.{peer} >/dev/null 2>&1; do n=$((n+1)); done
ping -c 3 -W 2 10.0.0.{peer}
echo PING_RESULT=$?"
    )
}

/// A guest on the bess socket `bess` that pings its peer and then stays up so that its peer
/// can ping it.
fn pinger(bess: &Path, me: u8, peer: u8) -> Guest {
    GuestBuilder::new("sb")
        .mem("64M")
        .arg(format!(
            "vec0:transport=bess,mac={},dst={}",
            mac(me),
            bess.display()
        ))
        .body(&format!(
            "{}\nwhile :; do sleep 1; done",
            ping_script(me, peer)
        ))
        .boot()
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
    wait_until_or(what, timeout, &mut cond, String::new);
}

/// [`wait_until`], saying `context()` when it times out.
fn wait_until_or(
    what: &str,
    timeout: Duration,
    mut cond: impl FnMut() -> bool,
    context: impl Fn() -> String,
) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what} {}",
            context()
        );
        sleep(Duration::from_millis(20));
    }
}

/// A bess port this test opens itself, recording every frame the switch sends it.
struct RawPort {
    conn: Arc<SeqPacket>,
    frames: Arc<Mutex<Vec<Vec<u8>>>>,
    closed: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    collector: Option<JoinHandle<()>>,
}

impl RawPort {
    fn connect(bess: &Path) -> RawPort {
        let conn = Arc::new(SeqPacket::connect(bess, None).unwrap());
        let frames = Arc::new(Mutex::new(Vec::new()));
        let closed = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let collector = {
            let (conn, frames) = (conn.clone(), frames.clone());
            let (closed, stop) = (closed.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    match conn.recv(&mut buf) {
                        Ok(Some(n)) => frames.lock().unwrap().push(buf[..n.min(2048)].to_vec()),
                        Ok(None) => {
                            closed.store(true, Ordering::Relaxed);
                            return;
                        }
                        Err(_) => sleep(Duration::from_millis(1)),
                    }
                }
            })
        };
        RawPort {
            conn,
            frames,
            closed,
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

/// A broadcast frame from `src` with an unused ethertype, `len` bytes long.
fn frame(dst: [u8; 6], src: [u8; 6], len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
    f
}

/// Send one message, waiting (a bounded time) while the socket buffer is full; errors after
/// the switch closed the port are ignored.
fn send_waiting(conn: &SeqPacket, msg: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while let Err(e) = conn.send(msg) {
        if e.kind() != std::io::ErrorKind::WouldBlock || Instant::now() > deadline {
            return;
        }
        sleep(Duration::from_millis(1));
    }
}

#[test]
fn two_vector_guests_ping_each_other_through_the_bess_socket() {
    if !vector_kernel() {
        return;
    }
    let sw = InProcess::start(SwitchOptions::default());
    let a = pinger(&sw.bess, 1, 2);
    let b = pinger(&sw.bess, 2, 1);
    assert_pinged(&a);
    assert_pinged(&b);
    assert_eq!(sw.handle.stats().ports, 2);
    drop((a, b));
    wait_until("the guests' ports to go", Duration::from_secs(10), || {
        sw.handle.stats().ports == 0
    });
    let stats = sw.stop();
    assert_eq!(stats.dropped(), 0, "{stats:?}");
}

#[test]
fn pcap_capture_holds_the_icmp_frames_of_bess_guests() {
    if !vector_kernel() {
        return;
    }
    let dir = short_tempdir("umlkit-sb");
    let pcap = dir.path().join("capture.pcap");
    let sw = InProcess::start(SwitchOptions {
        pcap: Some(pcap.clone()),
        ..SwitchOptions::default()
    });
    let a = pinger(&sw.bess, 1, 2);
    let b = pinger(&sw.bess, 2, 1);
    assert_pinged(&a);
    assert_pinged(&b);
    drop((a, b));
    sw.stop();
    let out = Command::new("tcpdump")
        .args(["-nn", "-e", "-r"])
        .arg(&pcap)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("10.0.0.1 > 10.0.0.2: ICMP echo request"),
        "{text}"
    );
    assert!(
        text.contains("10.0.0.2 > 10.0.0.1: ICMP echo reply"),
        "{text}"
    );
    assert!(text.contains(&mac(1)), "{text}");
}

#[test]
fn hub_mode_floods_unicast_frames_to_every_bess_port() {
    if !vector_kernel() {
        return;
    }
    let sw = InProcess::start(SwitchOptions {
        hub: true,
        ..SwitchOptions::default()
    });
    let raw = RawPort::connect(&sw.bess);
    let a = pinger(&sw.bess, 1, 2);
    let b = pinger(&sw.bess, 2, 1);
    assert_pinged(&a);
    assert_pinged(&b);
    let ipv4 = raw.ethertypes().iter().filter(|&&t| t == 0x0800).count();
    assert!(
        ipv4 >= 6,
        "a hub port saw only {ipv4} IPv4 frames of the pings"
    );
}

#[test]
fn switch_mode_keeps_unicast_between_learned_bess_guests_off_a_third_port() {
    if !vector_kernel() {
        return;
    }
    let sw = InProcess::start(SwitchOptions::default());
    let raw = RawPort::connect(&sw.bess);
    let a = pinger(&sw.bess, 1, 2);
    let b = pinger(&sw.bess, 2, 1);
    assert_pinged(&a);
    assert_pinged(&b);
    let types = raw.ethertypes();
    assert!(types.contains(&0x0806), "no ARP broadcast seen: {types:x?}");
    assert!(!types.contains(&0x0800), "unicast IPv4 leaked: {types:x?}");
}

/// No guest needed: the limits on malformed and silent connections, seen from the socket.
#[test]
fn malformed_and_silent_bess_connections_lose_their_ports() {
    let sw = InProcess::start(SwitchOptions::default());
    let oversized = RawPort::connect(&sw.bess);
    let empty = RawPort::connect(&sw.bess);
    let big = frame([0xff; 6], [2, 0, 0, 0, 0, 1], 4000);
    for _ in 0..100 {
        send_waiting(&oversized.conn, &big);
        send_waiting(&empty.conn, &[]);
    }
    wait_until_or(
        "the switch to close the ports of malformed senders",
        Duration::from_secs(10),
        || oversized.closed.load(Ordering::Relaxed) && empty.closed.load(Ordering::Relaxed),
        || format!("{:?}", sw.handle.stats()),
    );
    let stats = sw.handle.stats();
    assert!(
        stats.dropped_oversize >= 64 && stats.dropped_runt >= 64,
        "{stats:?}"
    );
    assert_eq!(stats.frames_received, 0, "{stats:?}");

    // A talker, then 100 connections that say nothing: the switch keeps at most 64 silent
    // ones, closing the oldest, and never the talker.
    let talker = RawPort::connect(&sw.bess);
    talker
        .conn
        .send(&frame([0xff; 6], [2, 0, 0, 0, 0, 2], 60))
        .unwrap();
    wait_until("the talker's frame", Duration::from_secs(5), || {
        sw.handle.stats().frames_received == 1
    });
    let silent: Vec<SeqPacket> = (0..100)
        .map(|_| SeqPacket::connect(&sw.bess, None).unwrap())
        .collect();
    wait_until(
        "silent ports to be evicted",
        Duration::from_secs(10),
        || sw.handle.stats().ports_evicted == 36,
    );
    assert_eq!(sw.handle.stats().ports, 65);
    assert!(!talker.closed.load(Ordering::Relaxed));
    drop(silent);
    wait_until("closed ports to go", Duration::from_secs(10), || {
        sw.handle.stats().ports == 1
    });
}

#[test]
fn hostile_bess_peers_never_stop_two_guests_pinging() {
    if !vector_kernel() {
        return;
    }
    let sw = InProcess::start(SwitchOptions::default());
    // Connections that say nothing, more than the switch keeps.
    let silent: Vec<SeqPacket> = (0..100)
        .map(|_| SeqPacket::connect(&sw.bess, None).unwrap())
        .collect();
    // A peer that announces its address and never reads, and one that floods it with
    // unicast frames: only the deaf port's queue overflows.
    let deaf = SeqPacket::connect(&sw.bess, None).unwrap();
    let deaf_mac = [2, 0, 0, 0, 0, 0xde];
    deaf.send(&frame([0xff; 6], deaf_mac, 60)).unwrap();
    let flooder = RawPort::connect(&sw.bess);
    let oversized = RawPort::connect(&sw.bess);
    let empty = RawPort::connect(&sw.bess);
    let a = pinger(&sw.bess, 1, 2);
    let b = pinger(&sw.bess, 2, 1);
    let stop = Arc::new(AtomicBool::new(false));
    let noise = {
        let stop = stop.clone();
        let (fl, ov, em) = (
            flooder.conn.clone(),
            oversized.conn.clone(),
            empty.conn.clone(),
        );
        std::thread::spawn(move || {
            let unicast = frame(deaf_mac, [2, 0, 0, 0, 0, 0xf1], 1500);
            let big = frame([0xff; 6], [2, 0, 0, 0, 0, 0xf2], 9000);
            for _ in 0..200_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                send_waiting(&fl, &unicast);
                let _ = ov.send(&big);
                let _ = em.send(&[]);
            }
        })
    };
    assert_pinged(&a);
    assert_pinged(&b);
    wait_until_or(
        "the deaf port's queue to overflow",
        Duration::from_secs(60),
        || sw.handle.stats().dropped_queue_full > 0,
        || format!("{:?}", sw.handle.stats()),
    );
    stop.store(true, Ordering::Relaxed);
    noise.join().unwrap();
    let stats = sw.handle.stats();
    assert!(stats.ports_evicted >= 36, "{stats:?}");
    assert!(
        stats.dropped_queue_full > 0,
        "the deaf port never filled: {stats:?}"
    );
    assert!(oversized.closed.load(Ordering::Relaxed), "{stats:?}");
    assert!(empty.closed.load(Ordering::Relaxed), "{stats:?}");
    drop((a, b, silent, deaf));
}

/// A `uml run` in the background, killed with its guest if the test fails.
struct RunningUml {
    child: Child,
}

impl RunningUml {
    fn start(uml_dir: &Path, umid: &str, script: &str) -> RunningUml {
        let child = Command::new(uml_bin())
            .arg("--uml-dir")
            .arg(uml_dir)
            .args([
                "run",
                "-m",
                "64M",
                "--umid",
                umid,
                "--net",
                "switch:lab",
                "--",
            ])
            .args(["sh", "-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        RunningUml { child }
    }

    /// Its stdout and stderr once it exits, within `timeout`.
    fn finish(mut self, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "uml run did not finish");
            sleep(Duration::from_millis(50));
        }
        let mut out = String::new();
        for pipe in [
            self.child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read>),
            self.child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read>),
        ]
        .into_iter()
        .flatten()
        {
            let mut pipe = pipe;
            let _ = pipe.read_to_string(&mut out);
        }
        out
    }
}

impl Drop for RunningUml {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Stops the named switch `uml run` started (its pid file is in the uml_dir).
struct NamedSwitch(PathBuf);

impl Drop for NamedSwitch {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.0)
            && let Ok(pid) = pid.trim().parse::<i32>()
        {
            // SAFETY: kill(2) only sends a signal.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
    }
}

#[test]
fn uml_run_net_switch_gives_a_vector_kernel_a_working_vec0() {
    if !vector_kernel() {
        return;
    }
    let dir = UmlDir::new();
    let _switch = NamedSwitch(dir.path().join(".umlkit/switch-lab.pid"));
    let script = |me, peer| format!("{}; sleep 3", ping_script(me, peer));
    let a = RunningUml::start(dir.path(), "bess-a", &script(1, 2));
    let b = RunningUml::start(dir.path(), "bess-b", &script(2, 1));
    for (name, run) in [("a", a), ("b", b)] {
        let out = run.finish(PING_TIMEOUT);
        assert!(
            out.contains("PING_RESULT=0") && out.contains(" 0% packet loss"),
            "guest {name} could not ping its peer:\n{out}"
        );
    }
    // The switch `uml run` started goes away by itself once both guests are gone.
    let sw =
        uml::switch::named::NamedSwitch::new(&uml::switch::named::runtime_dir(dir.path()), "lab")
            .unwrap();
    wait_until_or(
        "the named switch to stop after its guests",
        Duration::from_secs(40),
        // Not `is_live`: a probe counts as a guest arriving.
        || sw.running_pid().is_none(),
        || uml_switch(dir.path(), &["list"]),
    );
    assert!(!sw.control().exists() && !sw.pid_file().exists());
}

/// `uml --uml-dir DIR switch ARGS...`, which must succeed; its stdout.
fn uml_switch(uml_dir: &Path, args: &[&str]) -> String {
    let out = Command::new(uml_bin())
        .arg("--uml-dir")
        .arg(uml_dir)
        .arg("switch")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "uml switch {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Starts the named switch `name` in `uml_dir` the way `uml run --net switch:NAME` does,
/// with `extra` options; stopped (SIGTERM to its pid) on drop.
fn start_named(
    uml_dir: &Path,
    name: &str,
    extra: &[&str],
) -> (NamedSwitch, uml::switch::named::NamedSwitch) {
    let dir = uml::switch::named::runtime_dir(uml_dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sw = uml::switch::named::NamedSwitch::new(&dir, name).unwrap();
    let guard = NamedSwitch(sw.pid_file());
    let (ctl, bess, pid, stats) = (sw.control(), sw.bess(), sw.pid_file(), sw.stats_file());
    let mut args: Vec<&str> = vec!["--daemon"];
    for (flag, path) in [
        ("--unix", &ctl),
        ("--bess", &bess),
        ("--pid-file", &pid),
        ("--stats", &stats),
    ] {
        args.push(flag);
        args.push(path.to_str().unwrap());
    }
    args.extend_from_slice(extra);
    uml_switch(uml_dir, &args);
    assert!(sw.is_live());
    (guard, sw)
}

fn process_gone(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

#[test]
fn idle_switch_stops_after_its_last_port_closes_and_list_shows_ports_and_counters() {
    let dir = UmlDir::new();
    let (_guard, sw) = start_named(dir.path(), "lab", &["--exit-when-idle", "1"]);
    let pid = sw.pid().expect("pid file");
    let a = RawPort::connect(&sw.bess());
    let b = RawPort::connect(&sw.bess());
    for _ in 0..3 {
        send_waiting(&a.conn, &frame([0xff; 6], [2, 0, 0, 0, 0, 1], 60));
    }
    wait_until("b to get a's frames", Duration::from_secs(5), || {
        b.frames.lock().unwrap().len() >= 3
    });
    // Ports attached for longer than the grace keep the switch.
    sleep(Duration::from_millis(1500));
    assert!(
        sw.running_pid().is_some(),
        "the switch stopped with two ports attached"
    );
    wait_until(
        "the status file to count the frames",
        Duration::from_secs(5),
        || {
            sw.status()
                .is_some_and(|s| s.stats.frames_received >= 3 && s.ports.len() == 2)
        },
    );
    let table = uml_switch(dir.path(), &["list"]);
    let line = table
        .lines()
        .find(|l| l.starts_with("lab "))
        .unwrap_or_else(|| panic!("no lab in\n{table}"));
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        cols[1..5],
        [pid.to_string().as_str(), "live", "2", "3"],
        "{table}"
    );
    assert_eq!(
        table
            .lines()
            .filter(|l| l.trim_start().starts_with("port "))
            .count(),
        2,
        "{table}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&uml_switch(dir.path(), &["list", "--json"])).unwrap();
    assert_eq!(json[0]["name"], "lab");
    assert_eq!(json[0]["status"]["stats"]["frames_sent"], 3);

    drop(a);
    drop(b);
    wait_until("the idle switch to stop", Duration::from_secs(10), || {
        process_gone(pid)
    });
    assert!(!sw.control().exists() && !sw.bess().exists());
    assert!(!sw.pid_file().exists() && !sw.stats_file().exists());
}

#[test]
fn a_connection_during_the_grace_keeps_an_idle_switch() {
    let dir = UmlDir::new();
    let (_guard, sw) = start_named(dir.path(), "lab", &["--exit-when-idle", "2"]);
    let pid = sw.pid().unwrap();
    // A probe (what `uml run` does before it boots its guest) at 1.5 s restarts the grace.
    sleep(Duration::from_millis(1500));
    assert!(uml::switch::is_served(&sw.control()));
    sleep(Duration::from_millis(1500));
    assert!(
        sw.running_pid().is_some(),
        "the switch stopped within the grace of a probe"
    );
    let port = RawPort::connect(&sw.bess());
    sleep(Duration::from_millis(2500));
    assert!(sw.running_pid().is_some());
    drop(port);
    wait_until("the idle switch to stop", Duration::from_secs(10), || {
        process_gone(pid)
    });
}

#[test]
fn switch_stop_stops_a_named_switch_with_ports_attached() {
    let dir = UmlDir::new();
    let (_guard, sw) = start_named(dir.path(), "lab", &[]);
    let pid = sw.pid().unwrap();
    let port = RawPort::connect(&sw.bess());
    uml_switch(dir.path(), &["stop", "lab"]);
    assert!(process_gone(pid) && !sw.control().exists());
    wait_until("the port to be closed", Duration::from_secs(5), || {
        port.closed.load(Ordering::Relaxed)
    });
    let out = Command::new(uml_bin())
        .arg("--uml-dir")
        .arg(dir.path())
        .args(["switch", "stop", "lab"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no switch lab runs"));
}

#[test]
fn clean_keeps_a_live_switch_and_removes_a_stopped_ones_files() {
    let dir = UmlDir::new();
    let (_guard, live) = start_named(dir.path(), "live", &[]);
    let rt = uml::switch::named::runtime_dir(dir.path());
    let dead = uml::switch::named::NamedSwitch::new(&rt, "dead").unwrap();
    drop(std::os::unix::net::UnixListener::bind(dead.control()).unwrap());
    std::fs::write(dead.pid_file(), "999999\n").unwrap();
    let out = Command::new(uml_bin())
        .arg("--uml-dir")
        .arg(dir.path())
        .arg("clean")
        .output()
        .unwrap();
    assert!(out.status.success());
    for f in [live.control(), live.bess(), live.pid_file()] {
        assert!(f.exists(), "clean removed {}", f.display());
    }
    assert!(live.is_live());
    assert!(!dead.control().exists() && !dead.pid_file().exists());
    uml_switch(dir.path(), &["stop", "live"]);
}

/// Flood 1514-byte broadcasts from one port to `sinks` ports that never read, and return
/// what the sinks pin (kernel send buffer in use plus frames queued in the switch), the
/// largest per port and the total, from the switch's status file.
fn pinned_by_sinks(opts: SwitchOptions, sinks: usize, frames: usize) -> (usize, usize) {
    let dir = short_tempdir("umlkit-mem");
    let stats_path = dir.path().join("stats");
    let sw = InProcess::start(SwitchOptions {
        stats: Some(stats_path.clone()),
        ..opts
    });
    let sinks: Vec<SeqPacket> = (0..sinks)
        .map(|i| {
            let sink = SeqPacket::connect(&sw.bess, None).unwrap();
            // One frame each, so that no sink counts as a silent connection to evict.
            let src = [2, 0, 0, 1, (i >> 8) as u8, i as u8];
            send_waiting(&sink, &frame([0xff; 6], src, 60));
            sink
        })
        .collect();
    let sender = SeqPacket::connect(&sw.bess, None).unwrap();
    wait_until("every port to attach", Duration::from_secs(10), || {
        sw.handle.stats().ports == sinks.len() as u64 + 1
    });
    let big = frame([0xff; 6], [2, 0, 0, 0, 0, 1], 1514);
    for _ in 0..frames {
        send_waiting(&sender, &big);
    }
    wait_until_or(
        "the sinks' buffers and queues to fill",
        Duration::from_secs(20),
        || sw.handle.stats().frames_received >= (frames + sinks.len()) as u64,
        || format!("{:?}", sw.handle.stats()),
    );
    let stats = sw.handle.stats();
    assert!(
        stats.dropped_queue_full > 0,
        "the flood never filled a sink: {stats:?}"
    );
    // The status file is rewritten once a second while the counters change.
    let mut status = None;
    wait_until(
        "the status file to show the flood",
        Duration::from_secs(10),
        || {
            status = uml::switch::status::Status::read(&stats_path).ok();
            status
                .as_ref()
                .is_some_and(|s| s.stats == sw.handle.stats())
        },
    );
    let status = status.unwrap();
    let pinned: Vec<usize> = status
        .ports
        .iter()
        .map(|p| p.unread_bytes + p.queued_bytes)
        .collect();
    drop(sinks);
    (
        pinned.iter().copied().max().unwrap_or(0),
        pinned.iter().sum(),
    )
}

#[test]
fn a_port_that_never_reads_pins_bounded_memory_and_all_ports_share_the_budget() {
    // Defaults: one sink pins at most its doubled 256 KiB send buffer plus 256 queued frames
    // (and one frame over, which the kernel lets through).
    let (one, _) = pinned_by_sinks(SwitchOptions::default(), 1, 1500);
    eprintln!("one sink that never reads pins {} KiB", one >> 10);
    assert!(one <= (512 << 10) + 256 * 1514 + 4096, "{one} bytes");
    assert!(
        one >= 256 << 10,
        "the sink pinned only {one} bytes: was it filled?"
    );

    // 100 sinks share a 16 MiB budget.
    let budget = 16 << 20;
    let (most, total) = pinned_by_sinks(
        SwitchOptions {
            memory_budget: budget,
            ..SwitchOptions::default()
        },
        100,
        600,
    );
    eprintln!(
        "100 sinks that never read pin {} KiB in all (at most {} KiB each) of a {} KiB budget",
        total >> 10,
        most >> 10,
        budget >> 10
    );
    assert!(total <= budget + 100 * 4096, "{total} bytes pinned");
}
