//! Launching and supervising a UML kernel.
//!
//! [`Launch`] spawns the kernel with an argv built by the option model, learns that it booted
//! from its notify socket (`mconsole=notify:`), supervises it and collects its exit status.
//! [`DefaultGuest`] is the built-in guest of `uml run`: the host's `/` as a read-only hostfs
//! root, tmpfs where a shell needs to write, and either an interactive shell or one command
//! whose output and exit status come back to the host.
//!
//! Kernel facts this relies on (checked against the 6.1 kernel):
//! * `main()` calls `setsid()`, so the kernel must not be started as a process-group leader, and
//!   its helper processes share its process group: cleanup kills the group, not the pid.
//! * On a panic it sends SIGTERM to its own process group and aborts (SIGABRT); the instance
//!   directory stays behind.
//! * `/proc/exitcode` sets the exit status of a halt or poweroff.
//! * `conN` is the guest's `/dev/ttyN`; `null,fd:N` is a channel pair with no input that writes to
//!   host descriptor N; `console=ttyN` sends the kernel's own messages (the boot log) there.

use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::kernel::diagnosis::Diagnosis;
use crate::mconsole::{Notification, NotifyListener};

/// The message the built-in guest's init writes to `/proc/mconsole` once userspace is up.
pub const BOOTED_MESSAGE: &[u8] = b"umlkit: booted\n";

/// The most of a boot log that an error message quotes.
const LOG_TAIL_LINES: usize = 20;

/// Errors of launching and supervising a kernel.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(
        "cannot run the UML kernel {} (install the user-mode-linux package, or pass --kernel PATH)",
        kernel.display()
    )]
    Kernel {
        kernel: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "umid \"{umid}\" is already in use by pid {pid} (choose another --umid, or stop that guest)"
    )]
    UmidInUse { umid: String, pid: u32 },
    #[error("cannot prepare {}", path.display())]
    Prepare {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot listen for the guest's notifications on {}", path.display())]
    Notify {
        path: PathBuf,
        #[source]
        source: crate::mconsole::Error,
    },
    #[error("the guest panicked: {message}{}", log_text(log_tail, diagnosis.as_deref()))]
    Panicked {
        message: String,
        log_tail: String,
        /// A known incompatibility of kernel and host that the boot log shows.
        diagnosis: Option<Box<Diagnosis>>,
    },
    #[error(
        "the kernel exited ({status}) before the guest booted{}",
        log_text(log_tail, diagnosis.as_deref())
    )]
    ExitedEarly {
        status: String,
        log_tail: String,
        diagnosis: Option<Box<Diagnosis>>,
    },
    #[error(
        "the guest did not boot within {after:?}; it was killed{}",
        log_text(log_tail, diagnosis.as_deref())
    )]
    BootTimeout {
        after: Duration,
        log_tail: String,
        diagnosis: Option<Box<Diagnosis>>,
    },
    #[error(
        "no login prompt showed on any of the guest's console lines within {after:?} (does the image run a getty? without --detach its console is this terminal); it was killed{}",
        log_text(log_tail, diagnosis.as_deref())
    )]
    NoLoginPrompt {
        after: Duration,
        log_tail: String,
        diagnosis: Option<Box<Diagnosis>>,
    },
    #[error("cannot prepare the guest's runtime files")]
    Runtime(#[source] crate::instance::InstanceError),
    #[error("waiting for the kernel failed")]
    Wait(#[source] io::Error),
}

impl LaunchError {
    /// The known incompatibility of kernel and host that made the boot fail, if the boot log
    /// shows one.
    pub fn diagnosis(&self) -> Option<&Diagnosis> {
        match self {
            LaunchError::Panicked { diagnosis, .. }
            | LaunchError::ExitedEarly { diagnosis, .. }
            | LaunchError::BootTimeout { diagnosis, .. }
            | LaunchError::NoLoginPrompt { diagnosis, .. } => diagnosis.as_deref(),
            _ => None,
        }
    }
}

/// What an error quotes of the boot log: the diagnosis and the line that shows it when the log
/// shows a known incompatibility (the tail is then a panic's call trace, which hides the cause),
/// else the last lines.
fn log_text(tail: &str, diagnosis: Option<&Diagnosis>) -> String {
    if let Some(d) = diagnosis {
        return format!("\n{d}");
    }
    if tail.trim().is_empty() {
        String::new()
    } else {
        format!("\n--- last lines of the boot log ---\n{tail}")
    }
}

/// Where the kernel's console and boot log go.
#[derive(Debug, Clone)]
pub enum Console {
    /// con0 reads and writes the launcher's stdin/stdout, con1 writes its stderr; the boot log
    /// goes to `log` (descriptor 3 of the kernel). With `stdin_as_text`, stdin (not a terminal)
    /// is copied through a pipe and its end is sent as the tty's EOF character (^D), because
    /// the kernel turns end of file on a console channel into a hangup, which a guest command
    /// that opens the line later never sees.
    Terminal { log: PathBuf, stdin_as_text: bool },
    /// Everything goes to `log`; stdin is /dev/null (a detached guest).
    Log { log: PathBuf },
}

impl Console {
    fn log(&self) -> &Path {
        match self {
            Console::Terminal { log, .. } | Console::Log { log } => log,
        }
    }
}

/// How to start one kernel.
#[derive(Debug, Clone)]
pub struct Launch {
    pub kernel: PathBuf,
    /// The kernel's argv (without the binary), as rendered by the option model. The launcher
    /// adds `mconsole=notify:` for its own socket.
    pub args: Vec<String>,
    pub umid: String,
    pub uml_dir: PathBuf,
    pub console: Console,
    /// The kernel's working directory: relative ubd paths resolve against it, and the kernel
    /// opens `root_fs` there by default, so it is a private directory, not the user's.
    pub cwd: PathBuf,
    /// Where the notify socket is bound.
    pub notify_socket: PathBuf,
    /// The one host CPU the kernel and every process it starts are confined to, or `None` to
    /// leave them to the host scheduler ([`guest_cpu`]).
    pub cpu: Option<usize>,
    /// Start the kernel with address space randomization already off (`personality(2)`
    /// ADDR_NO_RANDOMIZE), for a kernel that turns it off itself by re-executing
    /// ([`reexecs_without_aslr`]): that second exec of the whole kernel binary is then skipped.
    pub aslr_off: bool,
}

/// Whether the kernel of `profile` turns address space randomization off at its start by
/// setting ADDR_NO_RANDOMIZE and executing itself again (arch/um/os-Linux/main.c): 7.x kernels
/// do (verified on 7.2.13: two execs of the kernel without the preset, one with it); Debian's
/// 6.1.176 does not, and runs randomized. A launcher that sets the flag first saves that exec,
/// about 1 ms of every `uml run` (`uml run -- true` 1.007–1.038× the bare kernel on one CPU,
/// where it was 1.056–1.068×), and changes nothing else for such a kernel.
pub fn reexecs_without_aslr(profile: &crate::kernel::Profile) -> bool {
    profile.version.major >= 7
}

/// The host CPU for a guest, or `None` when it should not be confined to one: with `ncpus=`
/// above 1 among `args` (an SMP kernel's guest CPUs), or when this process may run on only one
/// CPU anyway.
///
/// A one-CPU guest is a ping-pong between host processes: each system call or page fault of a
/// guest process stops that process and wakes the kernel's, and back. Where the two run on
/// different host CPUs, every wake-up crosses CPUs, and in a virtual machine whose idle CPUs
/// halt, it waits for a halted CPU to come back: a guest system call took 50 µs on a 2-vCPU
/// host, against 3.5 µs with both on one CPU, and `uml run -- true` 40 ms against 27 ms.
///
/// The CPU is one that holds the fewest guests of `uml_dir` already confined to a CPU (so that
/// guests started one after another, `uml run --detach` from one shell, do not pile up on one
/// CPU); among those, the one this thread runs on for the first guest a process starts, then
/// the next ones in turn (the guests umld launches at once spread too). Only CPUs this process
/// may use are chosen (`taskset`, cpusets).
pub fn guest_cpu(args: &[String], uml_dir: Option<&Path>) -> Option<usize> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(usize::MAX);
    let smp = args.iter().any(|a| {
        a.strip_prefix("ncpus=")
            .is_some_and(|n| n.trim().parse::<u32>().map_or(true, |n| n > 1))
    });
    if smp {
        return None;
    }
    let cpus = allowed_cpus()?;
    if cpus.len() < 2 {
        return None;
    }
    let mut taken = vec![0usize; cpus.len()];
    for cpu in uml_dir.map(confined_guests).unwrap_or_default() {
        if let Some(i) = cpus.iter().position(|&c| c == cpu) {
            taken[i] += 1;
        }
    }
    let least = taken.iter().copied().min()?;
    // SAFETY: sched_getcpu takes no arguments and only reads this thread's state.
    let here = usize::try_from(unsafe { libc::sched_getcpu() }).ok();
    let first = here
        .and_then(|c| cpus.iter().position(|&x| x == c))
        .unwrap_or(0);
    let turn =
        match NEXT.compare_exchange(usize::MAX, first + 1, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => first,
            Err(_) => NEXT.fetch_add(1, Ordering::Relaxed),
        };
    (0..cpus.len())
        .map(|k| (turn + k) % cpus.len())
        .find(|&i| taken[i] == least)
        .map(|i| cpus[i])
}

/// The CPUs this process may run on, in order.
pub fn allowed_cpus() -> Option<Vec<usize>> {
    cpus_of(0)
}

/// The CPUs process `pid` (0: this one) may run on, in order; `None` when it cannot be asked
/// (gone, or not a pid).
pub fn cpus_of(pid: u32) -> Option<Vec<usize>> {
    let pid = libc::pid_t::try_from(pid).ok()?;
    // SAFETY: cpu_set_t is a plain bit array, valid all zeros; sched_getaffinity writes at most
    // the size it is given into it, and CPU_ISSET reads one bit within it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return None;
        }
        Some(
            (0..usize::try_from(libc::CPU_SETSIZE).unwrap_or(0))
                .filter(|&c| libc::CPU_ISSET(c, &set))
                .collect(),
        )
    }
}

/// The most instance directories [`confined_guests`] looks at: a uml_dir is the user's, but the
/// choice of a CPU must stay quick whatever it holds.
const MAX_COUNTED: usize = 4096;

/// The host CPU of each running guest of `uml_dir` that is confined to one (its kernel may run
/// on a single CPU). Only directories are looked into, never through a symlink, and pid files
/// are read as discovery reads them; a wrong one only moves the next guest to another CPU.
fn confined_guests(uml_dir: &Path) -> Vec<usize> {
    let Ok(entries) = std::fs::read_dir(uml_dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .take(MAX_COUNTED)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| crate::instance::read_pid_file(&e.path().join("pid")))
        .filter_map(|pid| match cpus_of(pid)?.as_slice() {
            [cpu] => Some(*cpu),
            _ => None,
        })
        .collect()
}

/// The user a kernel runs as ([`Launch::spawn_child_as`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (the primary group among them or not, as the user database says).
    pub groups: Vec<u32>,
}

mod disk_guest;
mod forward;
mod guest;
mod running;
mod runtime;
mod spawn;

pub use disk_guest::*;
pub use forward::*;
pub use guest::*;
pub use running::*;
pub use runtime::*;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_kernels_that_reexec_themselves_start_with_randomization_off() {
        use crate::kernel::{Profile, Version};
        assert!(reexecs_without_aslr(&Profile::assumed(Version::new(
            7, 2, 13
        ))));
        assert!(!reexecs_without_aslr(&Profile::assumed(Version::new(
            6, 1, 176
        ))));
    }

    #[test]
    fn a_one_cpu_guest_gets_one_allowed_cpu_and_the_guests_of_a_launcher_spread() {
        let allowed = allowed_cpus().unwrap();
        let smp = |n: &str| vec!["mem=64M".to_owned(), format!("ncpus={n}")];
        assert_eq!(
            guest_cpu(&smp("2"), None),
            None,
            "an SMP guest is never confined"
        );
        assert_eq!(guest_cpu(&smp("lots"), None), None);
        if allowed.len() < 2 {
            assert_eq!(guest_cpu(&[], None), None);
            return;
        }
        // Many picks: another test may take turns at the same time.
        let picks: Vec<usize> = (0..100)
            .map(|_| guest_cpu(&smp("1"), None).expect("a one-CPU guest gets a CPU"))
            .collect();
        assert!(
            picks.iter().all(|c| allowed.contains(c)),
            "{picks:?} not in {allowed:?}"
        );
        for cpu in &allowed {
            assert!(picks.contains(cpu), "CPU {cpu} never chosen: {picks:?}");
        }
    }

    /// A stand-in for a confined guest: a process on CPU `cpu` alone, named by a pid file in
    /// `dir/name/` the way kernels write theirs.
    fn confined_sleeper(dir: &Path, name: &str, cpu: usize) -> std::process::Child {
        use std::os::unix::process::CommandExt;
        let mut cmd = std::process::Command::new("sleep");
        cmd.arg("60");
        // SAFETY: sched_setaffinity is async-signal-safe; the set is made in the child from a
        // local, with the CPU number checked against the set's size.
        unsafe {
            cmd.pre_exec(move || {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(cpu, &mut set);
                if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap();
        std::fs::create_dir(dir.join(name)).unwrap();
        std::fs::write(dir.join(name).join("pid"), format!("{}\n", child.id())).unwrap();
        child
    }

    #[test]
    fn a_guest_goes_to_a_cpu_that_holds_fewer_confined_guests_of_its_uml_dir() {
        let allowed = allowed_cpus().unwrap();
        if allowed.len() < 2 {
            assert_eq!(guest_cpu(&[], None), None);
            return;
        }
        // Two "guests" confined to the first CPU in a uml_dir: every next guest goes elsewhere.
        let busy = allowed[0];
        let dir = tempfile::tempdir().unwrap();
        struct Reap(Vec<std::process::Child>);
        impl Drop for Reap {
            fn drop(&mut self) {
                for c in &mut self.0 {
                    let _ = c.kill();
                    let _ = c.wait();
                }
            }
        }
        let mut guests = Reap(Vec::new());
        for name in ["a", "b"] {
            guests.0.push(confined_sleeper(dir.path(), name, busy));
        }
        for _ in 0..allowed.len() * 2 {
            let cpu = guest_cpu(&[], Some(dir.path())).unwrap();
            assert_ne!(cpu, busy, "a third guest on the CPU of two others");
            assert!(allowed.contains(&cpu));
        }
        // Without them, the first CPU is a choice again.
        for c in &mut guests.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
        let picks: Vec<usize> = (0..100)
            .map(|_| guest_cpu(&[], Some(dir.path())).unwrap())
            .collect();
        assert!(picks.contains(&busy), "{picks:?}");

        // One guest on each of two CPUs, and a symlink to the first one's directory: counted
        // once, the first CPU is as good as the second.
        let other = allowed[1];
        let dir = tempfile::tempdir().unwrap();
        for (name, cpu) in [("x", busy), ("y", other)] {
            guests.0.push(confined_sleeper(dir.path(), name, cpu));
        }
        std::os::unix::fs::symlink(dir.path().join("x"), dir.path().join("z")).unwrap();
        let picks: Vec<usize> = (0..100)
            .map(|_| guest_cpu(&[], Some(dir.path())).unwrap())
            .collect();
        assert!(
            picks.contains(&busy),
            "a symlink counted as a guest: {picks:?}"
        );
    }

    #[test]
    fn forward_socket_lives_in_the_runtime_dir_or_a_per_user_tmp_dir() {
        let path = forward_socket();
        assert!(path.ends_with("umld.notify"), "{}", path.display());
        assert!(path.is_absolute());
        assert!(path.as_os_str().len() <= 107);
    }

    #[test]
    fn sh_quote_leaves_plain_words_and_quotes_the_rest() {
        assert_eq!(sh_quote("make"), "make");
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), "'it'\\''s'");
        assert_eq!(sh_quote(""), "''");
        assert_eq!(sh_quote("$HOME"), "'$HOME'");
    }

    #[test]
    fn a_disk_guest_boots_its_image_as_root_with_noreboot_and_the_hostname() {
        use crate::kernel::{Profile, Version};
        let guest = DiskGuest {
            root: "ubd0=/i/web1.img".into(),
            hostname: "web1".into(),
            detached: true,
        };
        let new = guest.kernel_args(
            "256M",
            "web1",
            Path::new("/u"),
            &Profile::assumed(Version::new(7, 2, 13)),
        );
        let old = guest.kernel_args(
            "256M",
            "web1",
            Path::new("/u"),
            &Profile::assumed(Version::new(6, 1, 176)),
        );
        for args in [&new, &old] {
            for want in [
                "ubd0=/i/web1.img",
                "root=/dev/ubda",
                "rw",
                "con0=pts",
                "systemd.hostname=web1",
                "umid=web1",
            ] {
                assert!(
                    args.iter().any(|a| a == want),
                    "{want} missing from {args:?}"
                );
            }
            assert!(!args.iter().any(|a| a.starts_with("init=")), "{args:?}");
        }
        // 6.1.176 has noreboot too (its --help lists it; it leaves the word for init, which
        // systemd as pid 1 ignores).
        assert!(new.iter().any(|a| a == "noreboot"), "{new:?}");
        assert!(old.iter().any(|a| a == "noreboot"), "{old:?}");
    }

    #[test]
    fn fresh_umids_fit_the_kernel_limit_and_differ() {
        let a = fresh_umid();
        let b = fresh_umid();
        assert!(a.len() <= 63);
        assert_ne!(a, b);
    }

    #[test]
    fn runtime_dir_falls_back_when_the_socket_path_would_be_too_long() {
        let long = PathBuf::from(format!("/tmp/{}", "x".repeat(100)));
        assert!(
            runtime_dir(&long, "g")
                .to_string_lossy()
                .starts_with("/tmp/umlkit-")
        );
        assert_eq!(
            runtime_dir(Path::new("/h/.uml"), "g"),
            Path::new("/h/.uml/.umlkit")
        );
    }
}
