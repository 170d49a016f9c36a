//! Guest-to-guest network speed through our switch, uml_switch and vde_switch, in one run.
//!
//! With a kernel that has the `daemon` transport (6.x) the guests use `eth0` (daemon for ours
//! and uml_switch, the legacy vde transport for vde_switch); with a vector-only kernel (7.x)
//! they use `vec0`: ours over `transport=bess`, vde_switch over `transport=vde` (which runs
//! `vde_plug`), and uml_switch is left out (it speaks only daemon).
//!
//! Two guests (mem=128M) per switch: iperf3 TCP for 10 s from one guest to the other
//! (`iperf3 -s -D` in the first, `iperf3 -c … -J` in the second) and the ping round trip
//! (`ping -c 50 -i 0.05`, median). Prints Mbit/s, p50 RTT, dropped frames (ours from the
//! switch's counters, uml_switch's from its stderr where it says so), TCP retransmissions
//! and the ratios of ours to each reference.
//!
//! `cargo bench -p uml --bench switch_net` (set `SWITCH_BENCH_SECONDS` for another iperf3
//! duration).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use testkit::{Guest, GuestBuilder, short_tempdir};
use uml::switch::{Switch, SwitchOptions, is_served};

const SERVER_IP: &str = "192.0.2.2";

struct Row {
    name: &'static str,
    mbit: f64,
    rtt_p50_ms: f64,
    retransmits: u64,
    /// Frames the iperf3 client's kernel dropped because the switch's socket was full.
    guest_tx_dropped: u64,
    drops: String,
}

fn seconds() -> u64 {
    std::env::var("SWITCH_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10)
}

fn server(eth: &str) -> Guest {
    let dev = device(eth);
    GuestBuilder::new("swb")
        .mem("128M")
        .arg(eth)
        .body(&format!(
            "export PATH=/usr/sbin:/usr/bin:/sbin:/bin
ip link set lo up
ip link set {dev} up
ip addr add {SERVER_IP}/24 dev {dev}
iperf3 -s -D
echo SERVER_READY
while :; do sleep 1; done"
        ))
        .boot()
        .expect("server guest boots")
}

fn client(eth: &str) -> Guest {
    let secs = seconds();
    let dev = device(eth);
    GuestBuilder::new("swb")
        .mem("128M")
        .arg(eth)
        .body(&format!(
            "export PATH=/usr/sbin:/usr/bin:/sbin:/bin
ip link set lo up
ip link set {dev} up
ip addr add 192.0.2.1/24 dev {dev}
n=0
while [ $n -lt 60 ] && ! ping -c 1 -W 1 {SERVER_IP} >/dev/null 2>&1; do n=$((n+1)); done
sleep 1
ping -c 50 -i 0.05 {SERVER_IP} > /tmp/ping.txt
iperf3 -c {SERVER_IP} -t {secs} -J > /tmp/iperf.json
echo GUEST_TX_DROPPED=$(cat /sys/class/net/{dev}/statistics/tx_dropped)
echo BEGIN_PING; cat /tmp/ping.txt; echo END_PING
echo BEGIN_IPERF; cat /tmp/iperf.json; echo END_IPERF
echo BENCH_DONE"
        ))
        .boot()
        .expect("client guest boots")
}

/// The guest's interface for a kernel argument: `eth0=…` gives eth0, `vec0:…` vec0.
fn device(arg: &str) -> &str {
    arg.split(['=', ':']).next().unwrap_or("eth0")
}

fn between<'a>(log: &'a str, begin: &str, end: &str) -> &'a str {
    let start = log.find(begin).map(|i| i + begin.len()).unwrap_or(0);
    let stop = log[start..]
        .find(end)
        .map(|i| start + i)
        .unwrap_or(log.len());
    &log[start..stop]
}

/// Boot the pair on `eth` (a kernel `eth0=` argument), run the measurements, return
/// (Mbit/s, p50 RTT ms, TCP retransmits, frames the sending guest dropped on transmit).
fn measure(eth_server: &str, eth_client: &str) -> (f64, f64, u64, u64) {
    let srv = server(eth_server);
    srv.wait_for_log("SERVER_READY", Duration::from_secs(60))
        .expect("iperf3 server starts");
    let cli = client(eth_client);
    cli.wait_for_log("BENCH_DONE", Duration::from_secs(seconds() + 120))
        .expect("client finishes");
    let log = cli.log();
    let mut rtts: Vec<f64> = between(&log, "BEGIN_PING", "END_PING")
        .lines()
        .filter_map(|l| l.split("time=").nth(1))
        .filter_map(|t| t.split_whitespace().next())
        .filter_map(|t| t.parse().ok())
        .collect();
    rtts.sort_by(f64::total_cmp);
    let p50 = rtts.get(rtts.len() / 2).copied().unwrap_or(f64::NAN);
    let json: serde_json::Value = serde_json::from_str(
        between(&log, "BEGIN_IPERF", "END_IPERF").trim(),
    )
    .unwrap_or_else(|e| {
        panic!(
            "iperf3 JSON unreadable ({e}); log tail:\n{}",
            cli.log_tail(30)
        )
    });
    let bps = json["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or(f64::NAN);
    let retransmits = json["end"]["sum_sent"]["retransmits"].as_u64().unwrap_or(0);
    let tx_dropped = log
        .lines()
        .find_map(|l| l.trim().strip_prefix("GUEST_TX_DROPPED="))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    (bps / 1e6, p50, retransmits, tx_dropped)
}

fn mac(i: u8) -> String {
    format!("fe:fd:c0:00:02:{i:02x}")
}

fn ours(dir: &Path) -> Row {
    let ctl = dir.join("ours.ctl");
    let switch = Switch::bind(&ctl, SwitchOptions::default()).expect("our switch binds");
    let handle = switch.handle();
    let thread = std::thread::spawn(move || switch.serve());
    let c = ctl.display();
    let (mbit, rtt, retransmits, guest_tx_dropped) = measure(
        &format!("eth0=daemon,{},unix,{c}", mac(2)),
        &format!("eth0=daemon,{},unix,{c}", mac(1)),
    );
    handle.stop();
    let stats = thread.join().unwrap().expect("switch ran");
    Row {
        name: "uml switch (ours)",
        mbit,
        rtt_p50_ms: rtt,
        retransmits,
        guest_tx_dropped,
        drops: format!("{} (counter)", stats.dropped()),
    }
}

fn ours_bess(dir: &Path) -> Row {
    let bess = dir.join("ours.bess");
    let switch = Switch::bind(
        &dir.join("ours-b.ctl"),
        SwitchOptions {
            bess: Some(bess.clone()),
            ..SwitchOptions::default()
        },
    )
    .expect("our switch binds");
    let handle = switch.handle();
    let thread = std::thread::spawn(move || switch.serve());
    let b = bess.display();
    let (mbit, rtt, retransmits, guest_tx_dropped) = measure(
        &format!("vec0:transport=bess,mac={},dst={b}", mac(2)),
        &format!("vec0:transport=bess,mac={},dst={b}", mac(1)),
    );
    handle.stop();
    let stats = thread.join().unwrap().expect("switch ran");
    Row {
        name: "uml switch bess",
        mbit,
        rtt_p50_ms: rtt,
        retransmits,
        guest_tx_dropped,
        drops: format!("{} (counter)", stats.dropped()),
    }
}

struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn uml_switch(dir: &Path) -> Row {
    let ctl = dir.join("theirs.ctl");
    let err_path = dir.join("uml_switch.err");
    let child = Command::new("uml_switch")
        .arg("-unix")
        .arg(&ctl)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("uml_switch runs");
    let guard = Reaped(child);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !is_served(&ctl) && Instant::now() < deadline {
        sleep(Duration::from_millis(20));
    }
    let c = ctl.display();
    let (mbit, rtt, retransmits, guest_tx_dropped) = measure(
        &format!("eth0=daemon,{},unix,{c}", mac(2)),
        &format!("eth0=daemon,{},unix,{c}", mac(1)),
    );
    drop(guard);
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let reported = stderr
        .lines()
        .filter(|l| l.contains("send") || l.contains("drop") || l.contains("Resource"))
        .count();
    Row {
        name: "uml_switch",
        mbit,
        rtt_p50_ms: rtt,
        retransmits,
        guest_tx_dropped,
        drops: if reported > 0 {
            format!("{reported} (stderr lines)")
        } else {
            "not reported".into()
        },
    }
}

fn vde_switch(dir: &Path) -> Row {
    run_vde_switch(dir, |s, m| format!("eth0=vde,{s},{m}"), "vde_switch")
}

fn vde_switch_vector(dir: &Path) -> Row {
    run_vde_switch(
        dir,
        |s, m| format!("vec0:transport=vde,mac={m},vnl={s}"),
        "vde_switch (vector)",
    )
}

fn run_vde_switch(dir: &Path, arg: fn(&str, &str) -> String, name: &'static str) -> Row {
    let sock = dir.join("vde");
    let pid_file = dir.join("vde.pid");
    let status = Command::new("vde_switch")
        .arg("-s")
        .arg(&sock)
        .arg("-d")
        .arg("-p")
        .arg(&pid_file)
        .stdin(Stdio::null())
        .status()
        .expect("vde_switch runs");
    assert!(status.success(), "vde_switch failed to start");
    // The daemonized child writes the pid file after the parent has exited.
    let deadline = Instant::now() + Duration::from_secs(5);
    let pid: i32 = loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            break pid;
        }
        assert!(Instant::now() < deadline, "vde_switch wrote no pid file");
        sleep(Duration::from_millis(20));
    };
    struct Kill(i32);
    impl Drop for Kill {
        fn drop(&mut self) {
            // SAFETY: kill(2) only sends a signal.
            unsafe {
                libc::kill(self.0, libc::SIGTERM);
            }
        }
    }
    let _kill = Kill(pid);
    let s = sock.display().to_string();
    let (mbit, rtt, retransmits, guest_tx_dropped) = measure(&arg(&s, &mac(2)), &arg(&s, &mac(1)));
    Row {
        name,
        mbit,
        rtt_p50_ms: rtt,
        retransmits,
        guest_tx_dropped,
        drops: "-".into(),
    }
}

fn rounds() -> usize {
    std::env::var("SWITCH_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
        .max(1)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to configure from the command line. The
    // switches take turns, round after round, so that load from elsewhere on the machine hits
    // them alike; medians and ratios come from all rounds.
    let dir = short_tempdir("umlkit-swb");
    let kernel = testkit::kernel();
    let kernel = uml::kernel::on_path(&kernel.to_string_lossy()).unwrap_or(kernel);
    let vector_only = uml::kernel::Profile::read(&kernel)
        .is_ok_and(|p| !p.has("UML_NET_DAEMON") && p.has("UML_NET_VECTOR"));
    let runs: Vec<fn(&Path) -> Row> = if vector_only {
        vec![ours_bess, vde_switch_vector]
    } else {
        vec![ours, uml_switch, vde_switch]
    };
    let mut rows: Vec<Vec<Row>> = runs.iter().map(|_| Vec::new()).collect();
    println!("kernel {}", kernel.display());
    println!(
        "guest -> guest, iperf3 TCP {} s, ping -c 50 -i 0.05 (mem=128M guests), {} rounds",
        seconds(),
        rounds()
    );
    println!(
        "{:<6} {:<20} {:>10} {:>12} {:>12} {:>14} {:>22}",
        "round",
        "switch",
        "Mbit/s",
        "p50 RTT ms",
        "TCP retrans",
        "guest tx drop",
        "switch dropped frames"
    );
    for round in 1..=rounds() {
        for (run, out) in runs.iter().zip(rows.iter_mut()) {
            let r = run(dir.path());
            println!(
                "{:<6} {:<20} {:>10.1} {:>12.3} {:>12} {:>14} {:>22}",
                round, r.name, r.mbit, r.rtt_p50_ms, r.retransmits, r.guest_tx_dropped, r.drops
            );
            out.push(r);
        }
    }
    let med = |i: usize, f: fn(&Row) -> f64| median(rows[i].iter().map(f).collect());
    println!("median:");
    for (i, r) in rows.iter().enumerate() {
        println!(
            "       {:<20} {:>10.1} {:>12.3}",
            r[0].name,
            med(i, |r| r.mbit),
            med(i, |r| r.rtt_p50_ms)
        );
    }
    for (i, reference) in rows.iter().enumerate().skip(1) {
        let name = reference[0].name;
        println!(
            "ours / {name}: throughput x{:.2}, p50 RTT x{:.2}",
            med(0, |r| r.mbit) / med(i, |r| r.mbit),
            med(0, |r| r.rtt_p50_ms) / med(i, |r| r.rtt_p50_ms)
        );
    }
}
