//! Speed of umld, measured against the direct path in the same run:
//! * `Version` round trip through the bus (zbus client → dbus-daemon → umld → guest) vs a
//!   direct `uml::mconsole::Client` request to the same guest;
//! * time from a guest's boot notification to the `MconsoleReady` signal on the bus;
//! * umld's resident memory with 0 and with 20 guests (mem=40M each), and its CPU time (and
//!   the guests' kernels') while it only follows those 20 guests for 10 s (state sync, device
//!   refresh, uml_dir watch).
//!
//! Run: `cargo bench -p umld --bench dbus`. Needs `dbus-daemon` and the UML kernel.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use testkit::{GuestBuilder, SessionBus, UmlDir};

const NAME: &str = "org.umlkit.uml1";
const MACHINE: &str = "org.umlkit.uml1.Machine";

/// A child process killed on drop (umld, gdbus monitor).
struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_umld(bus: &SessionBus, uml_dir: &Path, notify: &Path) -> Service {
    let child = Command::new(env!("CARGO_BIN_EXE_umld"))
        .args(["--address", &bus.address, "--uml-dir"])
        .arg(uml_dir)
        .arg("--notify-socket")
        .arg(notify)
        .env("UMLD_LOG", "umld=info")
        .stdin(Stdio::null())
        .stderr(std::fs::File::create(notify.with_extension("log")).unwrap())
        .spawn()
        .expect("cannot start umld");
    Service(child)
}

/// CPU time of every thread of `pid` so far, in nanoseconds (`/proc/PID/task/*/schedstat`).
fn cpu_ns(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn vm_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

async fn list_len(conn: &zbus::Connection) -> usize {
    let reply = conn
        .call_method(
            Some(NAME),
            "/org/umlkit/uml1",
            Some("org.umlkit.uml1.Manager"),
            "ListMachines",
            &(),
        )
        .await;
    match reply {
        Ok(m) => m
            .body()
            .deserialize::<Vec<(String, String, String, zbus::OwnedObjectPath)>>()
            .map(|v| {
                v.iter()
                    .filter(|m| m.1 == "running" && !m.2.is_empty())
                    .count()
            })
            .unwrap_or(0),
        Err(_) => 0,
    }
}

async fn wait_running(conn: &zbus::Connection, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while list_len(conn).await < n {
        if Instant::now() >= deadline {
            let list = conn
                .call_method(
                    Some(NAME),
                    "/org/umlkit/uml1",
                    Some("org.umlkit.uml1.Manager"),
                    "ListMachines",
                    &(),
                )
                .await
                .ok()
                .and_then(|m| {
                    m.body()
                        .deserialize::<Vec<(String, String, String, zbus::OwnedObjectPath)>>()
                        .ok()
                });
            let log = std::fs::read_dir("/tmp")
                .ok()
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path().join("umld.log"))
                .filter(|p| p.exists())
                .map(|p| std::fs::read_to_string(p).unwrap_or_default())
                .collect::<Vec<_>>()
                .join("\n");
            panic!("{n} machines never ran with a known kernel version: {list:?}\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let bus = SessionBus::start();
    let dir = UmlDir::new();
    let scratch = testkit::short_tempdir("umld-b");
    let notify = scratch.path().join("umld.notify");
    let umld = start_umld(&bus, dir.path(), &notify);
    let umld_pid = umld.0.id();
    let conn = zbus::connection::Builder::address(bus.address.as_str())
        .build()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while conn
        .call_method(
            Some(NAME),
            "/org/umlkit/uml1",
            Some("org.umlkit.uml1.Manager"),
            "ListMachines",
            &(),
        )
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "umld did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss0 = vm_rss_kib(umld_pid);

    // --- Version round trip: bus vs direct mconsole.
    let guest = GuestBuilder::new("bench-v")
        .uml_dir(dir.path())
        .boot()
        .unwrap();
    wait_running(&conn, 1).await;
    let path = umld::machine_path(guest.umid());
    let proxy = zbus::Proxy::new(&conn, NAME, path.as_str(), MACHINE)
        .await
        .unwrap();
    const N: u32 = 500;
    // What the guest's uname must say, asked of the kernel under test.
    let release = testkit::kernel_release();
    for _ in 0..20 {
        let _: String = proxy.call("Version", &()).await.unwrap();
    }
    let t = Instant::now();
    for _ in 0..N {
        let v: String = proxy.call("Version", &()).await.unwrap();
        assert!(v.contains(release), "{v:?} does not name kernel {release}");
    }
    let bus_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(N);
    // The same path without the guest: Peer.Ping (answered by zbus) and a cached property.
    let t = Instant::now();
    for _ in 0..N {
        let _: () = zbus::Proxy::new(&conn, NAME, path.as_str(), "org.freedesktop.DBus.Peer")
            .await
            .unwrap()
            .call("Ping", &())
            .await
            .unwrap();
    }
    let ping_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(N);
    let t = Instant::now();
    for _ in 0..N {
        conn.call_method(
            Some(NAME),
            path.as_str(),
            Some("org.freedesktop.DBus.Properties"),
            "Get",
            &(MACHINE, "State"),
        )
        .await
        .unwrap();
    }
    let prop_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(N);
    let client = uml::mconsole::Client::connect(&guest.mconsole_path()).unwrap();
    for _ in 0..20 {
        client.version().unwrap();
    }
    let t = Instant::now();
    for _ in 0..N {
        let v = client.version().unwrap();
        assert!(v.contains(release), "{v:?} does not name kernel {release}");
    }
    let direct_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(N);
    // The tokio client umld uses, from this process: separates umld's own cost from the
    // client's.
    let async_client = uml::mconsole::AsyncClient::connect(&guest.mconsole_path())
        .await
        .unwrap();
    for _ in 0..20 {
        async_client.version().await.unwrap();
    }
    let t = Instant::now();
    for _ in 0..N {
        async_client.version().await.unwrap();
    }
    let async_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(N);
    // And through busctl, the stock client (a process per call).
    let t = Instant::now();
    const M: u32 = 20;
    for _ in 0..M {
        let out = Command::new("busctl")
            .arg(format!("--address={}", bus.address))
            .args(["call", NAME, &path, MACHINE, "Version"])
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    let busctl_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(M);
    println!("Version round trip, mean of {N}:");
    println!("  direct uml::mconsole::Client   {direct_us:8.1} µs");
    println!("  direct uml::mconsole::AsyncClient {async_us:8.1} µs");
    println!(
        "  through the bus (zbus client)  {bus_us:8.1} µs   ratio bus/direct {:.2}",
        bus_us / direct_us
    );
    println!("  busctl call (process per call, mean of {M}) {busctl_us:8.1} µs");
    println!("  for reference: Peer.Ping {ping_us:.1} µs, Get(State) {prop_us:.1} µs");
    drop(guest);

    // --- Boot notification → Booted signal. The kernel's notify socket is a relay that
    // timestamps each datagram and forwards it unchanged to umld's socket (moved aside).
    let aside = scratch.path().join("umld.real");
    std::fs::rename(&notify, &aside).unwrap();
    let relay = std::os::unix::net::UnixDatagram::bind(&notify).unwrap();
    let (stamp_tx, stamp_rx) = std::sync::mpsc::channel::<Instant>();
    let relay_thread = std::thread::spawn(move || {
        relay
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut buf = [0u8; 1024];
        while let Ok(n) = relay.recv(&mut buf) {
            let at = Instant::now();
            let _ = relay.send_to(&buf[..n], &aside);
            // Socket notifications (type 0) are the boot ones.
            if n >= 12 && buf[8..12] == 0u32.to_ne_bytes() && stamp_tx.send(at).is_err() {
                return;
            }
        }
    });
    let mut monitor = Service(
        Command::new("gdbus")
            .args(["monitor", "--address", &bus.address, "--dest", NAME])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (line_tx, line_rx) = std::sync::mpsc::channel::<(Instant, String)>();
    let stdout = monitor.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line_tx.send((Instant::now(), line)).is_err() {
                return;
            }
        }
    });
    // Wait until the monitor watches the name.
    loop {
        let (_, l) = line_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        if l.contains("is owned by") {
            break;
        }
    }
    let init = scratch.path().join("init");
    std::fs::write(
        &init,
        "#!/bin/sh\nmount -t proc proc /proc\nwhile :; do sleep 1; done\n",
    )
    .unwrap();
    std::fs::set_permissions(&init, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut latencies = Vec::new();
    for i in 0..5 {
        let umid = format!("bench-boot-{}-{i}", std::process::id());
        let args = testkit::guest_argv("40M", &init);
        let mut options = std::collections::HashMap::new();
        options.insert("umid", zbus::Variant::from(umid.as_str()));
        options.insert("kernel_args", zbus::Variant::from(args));
        let path: zbus::OwnedObjectPath = conn
            .call_method(
                Some(NAME),
                "/org/umlkit/uml1",
                Some("org.umlkit.uml1.Manager"),
                "Launch",
                &(options,),
            )
            .await
            .unwrap()
            .body()
            .deserialize()
            .unwrap();
        dir.remember();
        let sent = stamp_rx.recv_timeout(Duration::from_secs(30)).unwrap();
        let booted = loop {
            let (at, l) = line_rx.recv_timeout(Duration::from_secs(30)).unwrap();
            // The notification is the mconsole coming up: MconsoleReady (Booted waits for
            // userspace).
            if l.contains(path.as_str()) && l.contains("Machine.MconsoleReady") {
                break at;
            }
        };
        latencies.push(booted.saturating_duration_since(sent));
        dir.remember();
        let _: () = zbus::Proxy::new(&conn, NAME, path.as_str(), MACHINE)
            .await
            .unwrap()
            .call("Halt", &())
            .await
            .unwrap_or(());
    }
    drop(monitor);
    drop(relay_thread);
    latencies.sort();
    println!(
        "boot notification → MconsoleReady signal (seen by gdbus monitor), 5 launches: median {:?}, min {:?}, max {:?}",
        latencies[2], latencies[0], latencies[4]
    );

    // --- Resident memory with 20 guests, booted four at a time. They have mem=40M, not 32M:
    // the 6.1.176 kernel with a hostfs root panics at 32M ("System is deadlocked on
    // memory") right after its mconsole comes up.
    // testkit gives each kernel PR_SET_PDEATHSIG, which fires when the *thread* that started
    // it ends: each booting thread keeps its guests until the measurement is done.
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let done_rx = std::sync::Arc::new(std::sync::Mutex::new(done_rx));
    let (booted_tx, booted_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let d = dir.path().to_owned();
            let done = done_rx.clone();
            let booted = booted_tx.clone();
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                for i in 0..5 {
                    // A small guest now and then fails early in memblock allocation when the
                    // host is busy; boot it again rather than lose the run.
                    let mut result = Err(String::new());
                    for _ in 0..3 {
                        match GuestBuilder::new(&format!("bench-m{t}{i}"))
                            .mem("40M")
                            .uml_dir(&d)
                            .boot()
                        {
                            Ok(g) => {
                                mine.push(g);
                                result = Ok(());
                                break;
                            }
                            Err(e) => result = Err(e),
                        }
                    }
                    let _ = booted.send(result);
                }
                let _ = done.lock().map(|rx| rx.recv());
                drop(mine);
            })
        })
        .collect();
    for _ in 0..20 {
        booted_rx
            .recv()
            .unwrap()
            .unwrap_or_else(|e| panic!("a guest did not boot three times: {e}"));
    }
    wait_running(&conn, 20).await;
    // Let the boot-time refreshes finish.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss20 = vm_rss_kib(umld_pid);
    println!("umld VmRSS: {rss0} KiB with 0 guests, {rss20} KiB with 20 guests");
    // The guests' kernels answer umld's requests: their CPU time is part of the price.
    let kernels: Vec<u32> = uml::instance::discover(dir.path())
        .unwrap_or_default()
        .iter()
        .filter_map(|i| i.pid)
        .collect();
    let guests_cpu = || kernels.iter().map(|p| cpu_ns(*p)).sum::<u64>();
    let (before, guests_before) = (cpu_ns(umld_pid), guests_cpu());
    tokio::time::sleep(Duration::from_secs(10)).await;
    let used = cpu_ns(umld_pid).saturating_sub(before);
    let guests_used = guests_cpu().saturating_sub(guests_before);
    println!(
        "umld CPU following 20 idle guests: {:.1} ms per 10 s ({:.2}% of a core)",
        used as f64 / 1e6,
        used as f64 / 1e8
    );
    println!(
        "the {} guests' kernels meanwhile: {:.1} ms per 10 s ({:.2}% of a core)",
        kernels.len(),
        guests_used as f64 / 1e6,
        guests_used as f64 / 1e8
    );
    for _ in 0..4 {
        let _ = done_tx.send(());
    }
    for t in threads {
        let _ = t.join();
    }
    drop(umld);
}
