//! `uml run -- true` against the same guest booted with the bare `linux` command: the cost of
//! the launcher (validation, notify socket, supervision) on top of the kernel's own boot.
//!
//! Run with `cargo bench -p uml --bench launch`. Both boot the identical kernel argv and init
//! script (the built-in guest running `true`), interleaved, and the medians and their ratio
//! are printed.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use uml::launch::{DefaultGuest, Payload};

const ROUNDS: usize = 15;

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let dir = testkit::UmlDir::new();
    let uml_dir = dir.path().to_owned();
    let scratch = testkit::short_tempdir("umlkit-bench");
    let guest = DefaultGuest {
        payload: Payload::Command(vec!["true".into()]),
        cwd: "/".into(),
        env: Vec::new(),
        writable: Vec::new(),
        stdin_tty: false,
        stdout_tty: false,
    };
    let init = scratch.path().join("init");
    guest.write_init(&init).unwrap();

    // The kernel `uml run` picks (UML_KERNEL, `uml kernel use`, `linux` on PATH, …): both sides
    // boot the same one.
    let kernel = uml::kernel::resolve(None).expect("no UML kernel: run scripts/install-deps");
    println!("kernel: {}", kernel.display());
    let mut ours = Vec::new();
    let mut bare = Vec::new();
    for round in 0..ROUNDS {
        for pass in 0..2 {
            if (round + pass) % 2 == 0 {
                let t = Instant::now();
                let out = Command::new(env!("CARGO_BIN_EXE_uml"))
                    .arg("--uml-dir")
                    .arg(&uml_dir)
                    .arg("run")
                    .arg("--kernel")
                    .arg(&kernel)
                    .args(["--", "true"])
                    .current_dir("/")
                    .stdin(Stdio::null())
                    .output()
                    .unwrap();
                ours.push(t.elapsed());
                assert!(out.status.success(), "{out:?}");
            } else {
                let umid = format!("bare-{round}");
                let args = guest.kernel_args(&init, "256M", &umid, &uml_dir);
                let log = std::fs::File::create(scratch.path().join("log")).unwrap();
                let t = Instant::now();
                let status = Command::new(&kernel)
                    .args(&args)
                    .current_dir(scratch.path())
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    // The boot-log channel, descriptor 3, as `uml run` gives it.
                    .env("UMLKIT_BENCH", "1")
                    .spawn_with_fd3(log)
                    .wait()
                    .unwrap();
                bare.push(t.elapsed());
                assert!(status.success());
            }
        }
    }
    let o = median(&mut ours);
    let b = median(&mut bare);
    println!("boot, run `true`, power off: {ROUNDS} runs each, interleaved");
    println!(
        "uml run -- true          median {:>7.1} ms",
        o.as_secs_f64() * 1e3
    );
    println!(
        "bare linux, same guest   median {:>7.1} ms",
        b.as_secs_f64() * 1e3
    );
    println!("ratio uml/bare: {:.3}", o.as_secs_f64() / b.as_secs_f64());
}

trait SpawnWithFd3 {
    fn spawn_with_fd3(&mut self, file: std::fs::File) -> std::process::Child;
}

impl SpawnWithFd3 for Command {
    fn spawn_with_fd3(&mut self, file: std::fs::File) -> std::process::Child {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let fd = file.as_raw_fd();
        // SAFETY: only dup2(2), async-signal-safe, runs between fork and exec; `file` stays open
        // in the parent until spawn returns.
        unsafe {
            self.pre_exec(move || {
                if libc::dup2(fd, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = self.spawn().unwrap();
        drop(file);
        child
    }
}
