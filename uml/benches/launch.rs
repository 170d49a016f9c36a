//! `uml run -- true` against a bare boot of the same kernel: the cost of the launcher
//! (validation, notify socket, supervision) and of the built-in guest's init on top of the
//! kernel's own boot.
//!
//! Run with `cargo bench -p uml --bench launch`. Interleaved, `ROUNDS` times each:
//! * `uml run -- true`: the launcher and its compiled init (`uml-init`);
//! * bare: the kernel alone with the same argv and memory, whose init powers off at once (this
//!   bench binary, which does only that when it runs as a guest's pid 1);
//! * bare without `lpj=`: as a user types it, the kernel calibrating its delay loop;
//! * bare running `true`: the same init, which first runs `true` and waits for it, as a plain
//!   Rust init does (std's `Command`, that is glibc's `posix_spawn`);
//! * bare running `true` raw: the same, with a child that makes one system call, execve: the
//!   least any launcher must do to run the command (a process started in a guest costs
//!   10-20 ms);
//! * the shell-script init that `uml run` used before the compiled one, running `true` under
//!   the bare kernel (the launcher's own share is not in it);
//! * time to the first byte of output of `uml run -- echo hi`;
//! * `uml run --cpu any -- true`, the guest left to the host scheduler (`uml run` confines a
//!   one-CPU guest to one host CPU by default), and the bare kernel confined to one CPU as
//!   `uml run` confines it, powering off at once and running `true` raw: like for like.
//!
//! Prints the medians and the ratios of `uml run -- true` to: bare (goal: at most 1.05), bare
//! running `true` either way (the launcher's and its init's own cost), and bare without `lpj=`
//! (what a user saves over typing the kernel's command line).

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use uml::launch::{DefaultGuest, Payload};

const ROUNDS: usize = 15;

/// Unix sockets bound on the host for the last measurement.
const BUSY_SOCKETS: usize = 2000;

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    if std::process::id() == 1 {
        // The bare boot's init: the least a guest can do, power off; with `umlkit_bench_run=`
        // on the kernel command line (which the kernel hands init as an environment
        // variable), the least that runs a command first.
        if let Some(program) = std::env::var_os("umlkit_bench_run") {
            let _ = Command::new(program).status();
        }
        if let Some(program) = std::env::var_os("umlkit_bench_run_raw") {
            run_raw(&program);
        }
        nix::unistd::sync();
        let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
        std::process::exit(1);
    }
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
    let script = scratch.path().join("script-init");
    guest.write_init_with(&script, None).unwrap();
    let minimal = std::env::current_exe().unwrap();
    let true_path = ["/usr/bin/true", "/bin/true"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .expect("no true(1) on this host");

    // The kernel `uml run` picks (UML_KERNEL, `uml kernel use`, `linux` on PATH, …): every side
    // boots the same one, with the argv `uml run` gives it.
    let kernel = uml::kernel::resolve(None).expect("no UML kernel: run scripts/install-deps");
    let profile = uml::kernel::Profile::read(&kernel).expect("cannot profile the kernel");
    println!("kernel: {} ({})", kernel.display(), profile.release);
    let seccomp = uml::options::by_name("seccomp=")
        .is_some_and(|s| s.presence(&profile) == uml::options::Presence::Present);
    let bare_args = |init: &Path, umid: &str| {
        let mut args = guest.kernel_args(init, "256M", umid, &uml_dir);
        if seccomp {
            args.push("seccomp=auto".into());
        }
        args
    };
    let uml_with = |options: &[&str], command: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_uml"));
        c.arg("--uml-dir")
            .arg(&uml_dir)
            .arg("run")
            .arg("--kernel")
            .arg(&kernel)
            .args(["--mem", "256M"])
            .args(options)
            .arg("--")
            .args(command)
            .current_dir("/")
            .stdin(Stdio::null());
        c
    };
    let uml = |command: &[&str]| uml_with(&[], command);
    let mut ours = Vec::new();
    let mut bare = Vec::new();
    let mut old = Vec::new();
    let mut first_byte = Vec::new();
    let mut calibrating = Vec::new();
    let mut bare_true = Vec::new();
    let mut bare_raw = Vec::new();
    let mut pinned = Vec::new();
    let mut pinned_raw = Vec::new();
    let mut unpinned = Vec::new();
    for round in 0..ROUNDS {
        for pass in 0..10 {
            match (round + pass) % 10 {
                0 => {
                    let t = Instant::now();
                    let out = uml(&["true"]).output().unwrap();
                    ours.push(t.elapsed());
                    assert!(out.status.success(), "{out:?}");
                }
                1 => {
                    let args = bare_args(&minimal, &format!("bare-{round}"));
                    bare.push(boot(&kernel, &args, scratch.path(), None));
                }
                2 => {
                    let args = bare_args(&script, &format!("script-{round}"));
                    old.push(boot(&kernel, &args, scratch.path(), None));
                }
                3 => {
                    let mut args = bare_args(&minimal, &format!("cal-{round}"));
                    args.retain(|a| !a.starts_with("lpj="));
                    calibrating.push(boot(&kernel, &args, scratch.path(), None));
                }
                4 => {
                    let mut args = bare_args(&minimal, &format!("true-{round}"));
                    args.push(format!("umlkit_bench_run={}", true_path.display()));
                    bare_true.push(boot(&kernel, &args, scratch.path(), None));
                }
                5 => {
                    let mut args = bare_args(&minimal, &format!("raw-{round}"));
                    args.push(format!("umlkit_bench_run_raw={}", true_path.display()));
                    bare_raw.push(boot(&kernel, &args, scratch.path(), None));
                }
                // The bare kernel confined to one CPU as `uml run` confines its guest
                // (uml::launch::guest_cpu): like for like.
                6 => {
                    let args = bare_args(&minimal, &format!("pin-{round}"));
                    let cpu = uml::launch::guest_cpu(&args, None);
                    pinned.push(boot(&kernel, &args, scratch.path(), cpu));
                }
                7 => {
                    let mut args = bare_args(&minimal, &format!("pinraw-{round}"));
                    args.push(format!("umlkit_bench_run_raw={}", true_path.display()));
                    let cpu = uml::launch::guest_cpu(&args, None);
                    pinned_raw.push(boot(&kernel, &args, scratch.path(), cpu));
                }
                8 => {
                    let t = Instant::now();
                    let out = uml_with(&["--cpu", "any"], &["true"]).output().unwrap();
                    unpinned.push(t.elapsed());
                    assert!(out.status.success(), "{out:?}");
                }
                _ => {
                    let t = Instant::now();
                    let mut child = uml(&["echo", "hi"])
                        .stdout(Stdio::piped())
                        .stderr(Stdio::null())
                        .spawn()
                        .unwrap();
                    let mut byte = [0u8; 1];
                    let n = child.stdout.as_mut().unwrap().read(&mut byte).unwrap();
                    first_byte.push(t.elapsed());
                    assert_eq!(n, 1, "no output from uml run -- echo hi");
                    assert!(child.wait().unwrap().success());
                }
            }
        }
    }
    // A desktop host has hundreds of unix sockets; nothing `uml run` does should read their
    // table (it did, twice, to list the guests in an error nobody saw).
    let busy_dir = tempfile::tempdir().unwrap();
    let busy: Vec<std::os::unix::net::UnixDatagram> = (0..BUSY_SOCKETS)
        .map(|i| {
            std::os::unix::net::UnixDatagram::bind(busy_dir.path().join(format!("s{i}"))).unwrap()
        })
        .collect();
    let mut with_sockets = Vec::new();
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let out = uml(&["true"]).output().unwrap();
        with_sockets.push(t.elapsed());
        assert!(out.status.success(), "{out:?}");
    }
    drop(busy);
    let w = median(&mut with_sockets);
    let o = median(&mut ours);
    let b = median(&mut bare);
    let s = median(&mut old);
    let f = median(&mut first_byte);
    let c = median(&mut calibrating);
    let t = median(&mut bare_true);
    let r = median(&mut bare_raw);
    let p = median(&mut pinned);
    let pr = median(&mut pinned_raw);
    let u = median(&mut unpinned);
    println!(
        "boot, run the payload, power off: {ROUNDS} runs each, interleaved, medians (mem=256M{})",
        if seccomp { ", seccomp=auto" } else { "" }
    );
    println!("uml run -- true                      {:>7.1} ms", ms(o));
    println!("bare kernel, init powers off         {:>7.1} ms", ms(b));
    println!("bare kernel, shell-script init, true {:>7.1} ms", ms(s));
    println!("bare kernel without lpj= (calibrates){:>7.1} ms", ms(c));
    println!("bare kernel, init runs true          {:>7.1} ms", ms(t));
    println!("bare kernel, init runs true, raw     {:>7.1} ms", ms(r));
    println!("uml run --cpu any -- true (unpinned) {:>7.1} ms", ms(u));
    println!("bare kernel on one CPU, powers off   {:>7.1} ms", ms(p));
    println!("bare kernel on one CPU, true raw     {:>7.1} ms", ms(pr));
    println!("uml run -- echo hi, first byte       {:>7.1} ms", ms(f));
    println!(
        "uml run -- true, {BUSY_SOCKETS} more unix sockets {:>7.1} ms",
        ms(w)
    );
    let sockets_label = format!("uml with {BUSY_SOCKETS} more sockets/without");
    for (label, ours, reference) in [
        ("uml/bare", o, b),
        ("uml/bare running true", o, t),
        ("uml/bare running true raw", o, r),
        ("uml/bare on one CPU", o, p),
        ("uml/bare on one CPU running true raw", o, pr),
        ("uml --cpu any/bare running true raw", u, r),
        (sockets_label.as_str(), w, o),
        ("uml/bare without lpj=", o, c),
        ("script init/bare", s, b),
    ] {
        println!(
            "ratio {label}: {:.3}",
            ours.as_secs_f64() / reference.as_secs_f64()
        );
    }
}

/// Runs `program` the cheapest way a guest can: a child that shares this process's memory and
/// makes one system call, execve (std's `Command` spawns through glibc's `posix_spawn`, whose
/// child resets all 64 signal dispositions first: 120 more system calls, each a round trip
/// between two host processes in a UML guest).
fn run_raw(program: &std::ffi::OsStr) {
    use std::os::unix::ffi::OsStrExt;
    struct Plan {
        argv: [*const libc::c_char; 2],
        envp: [*const libc::c_char; 1],
    }
    extern "C" fn child(plan: *mut libc::c_void) -> libc::c_int {
        // SAFETY: `plan` points to the `Plan` below, alive and unchanged until this child has
        // called execve or exited (CLONE_VFORK stops the parent); execve and _exit are
        // async-signal-safe.
        unsafe {
            let plan = &*plan.cast::<Plan>();
            libc::execve(plan.argv[0], plan.argv.as_ptr(), plan.envp.as_ptr());
            libc::_exit(127)
        }
    }
    let path = std::ffi::CString::new(program.as_bytes()).unwrap();
    let plan = Plan {
        argv: [path.as_ptr(), std::ptr::null()],
        envp: [std::ptr::null()],
    };
    let mut stack = vec![0u8; 64 * 1024];
    let top = stack.as_mut_ptr().wrapping_add(stack.len());
    let top = top.wrapping_sub(top as usize % 16);
    // SAFETY: the child runs `child` on `stack` with a pointer to `plan`; both outlive it, as
    // CLONE_VFORK keeps this thread stopped until the child has called execve or exited.
    let pid = unsafe {
        libc::clone(
            child,
            top.cast(),
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            std::ptr::from_ref(&plan).cast_mut().cast(),
        )
    };
    if pid > 0 {
        // SAFETY: waits for the child just started; a null status pointer is allowed.
        unsafe {
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
    }
}

/// Boots `kernel` with `args` (boot log on descriptor 3, as `uml run` gives it), on `cpu` alone
/// if given, and returns the time until it has exited successfully.
fn boot(kernel: &Path, args: &[String], cwd: &Path, cpu: Option<usize>) -> Duration {
    let log = std::fs::File::create(cwd.join("log")).unwrap();
    let t = Instant::now();
    let status = Command::new(kernel)
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn_with_fd3(log, cpu)
        .wait()
        .unwrap();
    let elapsed = t.elapsed();
    assert!(status.success(), "{kernel:?} {args:?}: {status}");
    elapsed
}

trait SpawnWithFd3 {
    fn spawn_with_fd3(&mut self, file: std::fs::File, cpu: Option<usize>) -> std::process::Child;
}

impl SpawnWithFd3 for Command {
    fn spawn_with_fd3(&mut self, file: std::fs::File, cpu: Option<usize>) -> std::process::Child {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let fd = file.as_raw_fd();
        // SAFETY: a zeroed cpu_set_t is empty; CPU_SET sets one bit of it (a CPU number that
        // guest_cpu took from this process's own set, below CPU_SETSIZE).
        let set = cpu.map(|cpu| unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            set
        });
        // SAFETY: only dup2(2) and sched_setaffinity(2), async-signal-safe, run between fork and
        // exec, on a set made before the fork; `file` stays open in the parent until spawn
        // returns.
        unsafe {
            self.pre_exec(move || {
                if libc::dup2(fd, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if let Some(set) = &set
                    && libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) != 0
                {
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
