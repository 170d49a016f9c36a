//! `version` round trips to a real guest: our `Client` against a minimal raw-socket client
//! (the least any client must do), and against `uml_mconsole` as a process.
//!
//! Run with `cargo bench -p uml --bench mconsole`. It prints medians and means per request and
//! the ratio ours/raw, measured in the same run, interleaved in rounds so that load changes on
//! the host hit both alike. The process runs are repeated with 2,000 more unix sockets bound
//! on the host (a desktop has hundreds), since `uml` proves which process holds the socket it
//! talks to and `uml_mconsole` does not.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use uml::mconsole::Client;

const N: usize = 2000;
const ROUNDS: usize = 20;
const PROCESS_RUNS: usize = 200;

/// The smallest correct client: bind an abstract address, send the 524-byte request the way
/// `uml_mconsole` does, read datagrams until one has `more == 0`. No checks beyond that.
struct RawClient {
    socket: UnixDatagram,
    request: [u8; 524],
}

impl RawClient {
    fn new(path: &Path) -> RawClient {
        let addr =
            SocketAddr::from_abstract_name(format!("umlkit-bench-raw-{}", std::process::id()))
                .unwrap();
        let socket = UnixDatagram::bind_addr(&addr).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        socket.connect(path).unwrap();
        let command = b"version";
        let mut request = [0u8; 524];
        request[0..4].copy_from_slice(&0xCAFE_BABEu32.to_ne_bytes());
        request[4..8].copy_from_slice(&2u32.to_ne_bytes());
        request[8..12].copy_from_slice(&(command.len() as u32).to_ne_bytes());
        request[12..12 + command.len()].copy_from_slice(command);
        RawClient { socket, request }
    }

    fn version(&self) -> usize {
        self.socket.send(&self.request).unwrap();
        let mut buf = [0u8; 1024];
        let mut total = 0;
        loop {
            let n = self.socket.recv(&mut buf).unwrap();
            total += n;
            if n < 12 || u32::from_ne_bytes(buf[4..8].try_into().unwrap()) == 0 {
                return total;
            }
        }
    }
}

struct Stats {
    median: Duration,
    mean: Duration,
    p95: Duration,
}

fn stats(samples: &mut [Duration]) -> Stats {
    samples.sort();
    let total: Duration = samples.iter().sum();
    Stats {
        median: samples[samples.len() / 2],
        mean: total / samples.len() as u32,
        p95: samples[samples.len() * 95 / 100],
    }
}

fn show(name: &str, s: &Stats) {
    println!(
        "{name:<28} median {:>9.1} µs   mean {:>9.1} µs   95th percentile {:>9.1} µs",
        s.median.as_secs_f64() * 1e6,
        s.mean.as_secs_f64() * 1e6,
        s.p95.as_secs_f64() * 1e6
    );
}

fn time_process(program: &str, args: &[&str]) -> Duration {
    let start = Instant::now();
    let out = Command::new(program).args(args).output().unwrap();
    let took = start.elapsed();
    assert!(out.status.success(), "{program} {args:?} failed: {out:?}");
    took
}

fn main() {
    let guest = testkit::GuestBuilder::new("bench-mc").boot().unwrap();
    guest
        .wait_for_log("READY", Duration::from_secs(30))
        .unwrap();
    let socket = guest.mconsole_path();
    let ours = Client::connect(&socket).unwrap();
    let raw = RawClient::new(&socket);

    // Warm up both paths (page cache, the guest's workqueue).
    for _ in 0..50 {
        ours.version().unwrap();
        raw.version();
    }

    let per_round = N / ROUNDS;
    let mut ours_t = Vec::with_capacity(N);
    let mut raw_t = Vec::with_capacity(N);
    for round in 0..ROUNDS {
        // Alternate which goes first so neither always runs on a warmer guest.
        for pass in 0..2 {
            if (round + pass) % 2 == 0 {
                for _ in 0..per_round {
                    let t = Instant::now();
                    std::hint::black_box(ours.version().unwrap());
                    ours_t.push(t.elapsed());
                }
            } else {
                for _ in 0..per_round {
                    let t = Instant::now();
                    std::hint::black_box(raw.version());
                    raw_t.push(t.elapsed());
                }
            }
        }
    }

    let ours_s = stats(&mut ours_t);
    let raw_s = stats(&mut raw_t);
    println!(
        "mconsole `version` round trips, {N} each (ours and raw interleaved in {ROUNDS} rounds)"
    );
    show("uml::mconsole::Client", &ours_s);
    show("raw socket client", &raw_s);
    println!(
        "ratio ours/raw: median {:.3}, mean {:.3}",
        ours_s.median.as_secs_f64() / raw_s.median.as_secs_f64(),
        ours_s.mean.as_secs_f64() / raw_s.mean.as_secs_f64()
    );
    processes(&guest, "process runs", "");

    let dir = tempfile::tempdir().unwrap();
    let _bound: Vec<UnixDatagram> = (0..BUSY_SOCKETS)
        .map(|i| UnixDatagram::bind(dir.path().join(format!("busy-socket-{i}"))).unwrap())
        .collect();
    processes(
        &guest,
        &format!("process runs with {BUSY_SOCKETS} more unix sockets bound on the host"),
        &format!(" with {BUSY_SOCKETS} more sockets"),
    );
}

const BUSY_SOCKETS: usize = 2000;

/// `uml_mconsole SOCKET version` against `uml version UMID`, alternating.
fn processes(guest: &testkit::Guest, title: &str, case: &str) {
    let socket = guest.mconsole_path();
    let path = socket.to_str().unwrap();
    let uml_dir = guest.uml_dir().to_str().unwrap();
    let mut reference_t = Vec::with_capacity(PROCESS_RUNS);
    let mut cli_t = Vec::with_capacity(PROCESS_RUNS);
    for _ in 0..PROCESS_RUNS {
        reference_t.push(time_process("uml_mconsole", &[path, "version"]));
        cli_t.push(time_process(
            env!("CARGO_BIN_EXE_uml"),
            &["--uml-dir", uml_dir, "version", guest.umid()],
        ));
    }
    let reference_s = stats(&mut reference_t);
    let cli_s = stats(&mut cli_t);
    println!("{title}, {PROCESS_RUNS} each");
    show("uml_mconsole SOCKET version", &reference_s);
    show("uml version UMID", &cli_s);
    println!(
        "ratio uml/uml_mconsole{case}: median {:.3}, mean {:.3}",
        cli_s.median.as_secs_f64() / reference_s.median.as_secs_f64(),
        cli_s.mean.as_secs_f64() / reference_s.mean.as_secs_f64()
    );
}
