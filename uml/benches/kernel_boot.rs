//! Boot time of each UML kernel on this machine: Debian's packaged kernel (`linux` on PATH) next
//! to the kernels built by `uml kernel build`, in the same run.
//!
//! Run with `cargo bench -p uml --bench kernel_boot`. Each kernel boots the same guest (the
//! host's `/` as a read-only hostfs root, a shell-script init that prints a marker and powers
//! off) `ROUNDS` times, interleaved. Two figures per kernel: the time until the kernel starts
//! init (`Run … as init process`), which every kernel reaches, and the time until it has
//! powered off, for kernels that can run a process on this host (Debian's 6.1 and 6.12 cannot
//! on a CPU with AMX; see `uml doctor`).

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ROUNDS: usize = 10;
const MARKER: &str = "umlkit-bench-init-ran";

struct Sample {
    to_init: Option<Duration>,
    to_exit: Duration,
    ran: bool,
}

fn boot(kernel: &Path, init: &Path, uml_dir: &Path, umid: &str) -> Sample {
    let started = Instant::now();
    let mut child = Command::new(kernel)
        .args(testkit::guest_argv("64M", init))
        .arg(format!("umid={umid}"))
        .arg(format!("uml_dir={}", uml_dir.display()))
        .current_dir(uml_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("cannot start the kernel");
    let pgid = child.id();
    // A kernel that neither powers off nor panics is stopped after 30 s.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watch = done.clone();
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if watch.load(std::sync::atomic::Ordering::Acquire) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        testkit::kill_group(pgid);
    });
    let mut to_init = None;
    let mut ran = false;
    for line in BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
    {
        if to_init.is_none() && line.contains("as init process") {
            to_init = Some(started.elapsed());
        }
        ran |= line.contains(MARKER);
    }
    let _ = child.wait();
    let to_exit = started.elapsed();
    testkit::kill_group(pgid);
    done.store(true, std::sync::atomic::Ordering::Release);
    let _ = std::fs::remove_dir_all(uml_dir.join(umid));
    Sample {
        to_init,
        to_exit,
        ran,
    }
}

fn median(mut v: Vec<Duration>) -> Option<Duration> {
    v.sort();
    v.get(v.len() / 2).copied()
}

fn ms(d: Option<Duration>) -> String {
    d.map_or_else(
        || "-".into(),
        |d| format!("{:.0} ms", d.as_secs_f64() * 1e3),
    )
}

fn main() {
    let mut kernels: Vec<PathBuf> = Vec::new();
    if let Some(packaged) = uml::kernel::packaged() {
        kernels.push(packaged);
    }
    kernels.extend(uml::kernel::installed().into_iter().map(|k| k.path));
    assert!(!kernels.is_empty(), "no kernel: run scripts/install-deps");
    let scratch = testkit::guest_visible_tempdir("umlkit-bench-boot");
    let init = scratch.path().join("init");
    std::fs::write(
        &init,
        format!("#!/bin/sh\nmount -t proc proc /proc\necho {MARKER}\npoweroff -f\n"),
    )
    .unwrap();
    std::fs::set_permissions(&init, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let uml_dir = testkit::UmlDir::new();

    let mut samples: Vec<Vec<Sample>> = kernels.iter().map(|_| Vec::new()).collect();
    for round in 0..ROUNDS {
        for (i, kernel) in kernels.iter().enumerate() {
            let umid = format!("bench-{round}-{i}");
            samples[i].push(boot(kernel, &init, uml_dir.path(), &umid));
        }
    }
    println!("boot of a hostfs guest, {ROUNDS} runs per kernel, interleaved (medians)");
    println!(
        "{:<58} {:>10} {:>12}  runs a process",
        "kernel", "to init", "to poweroff"
    );
    let mut reference = None;
    for (kernel, samples) in kernels.iter().zip(samples) {
        let release =
            uml::kernel::Profile::read(kernel).map_or_else(|e| e.to_string(), |p| p.release);
        let ran = samples.iter().all(|s| s.ran);
        let to_init = median(samples.iter().filter_map(|s| s.to_init).collect());
        let to_exit = ran
            .then(|| median(samples.iter().map(|s| s.to_exit).collect()))
            .flatten();
        let name = format!("{} ({release})", kernel.display());
        println!(
            "{name:<58} {:>10} {:>12}  {}",
            ms(to_init),
            ms(to_exit),
            if ran { "yes" } else { "no" }
        );
        if reference.is_none() {
            reference = to_init;
        } else if let (Some(r), Some(t)) = (reference, to_init) {
            println!(
                "  to init: {:.2}x the first kernel's time",
                t.as_secs_f64() / r.as_secs_f64()
            );
        }
    }
}
