//! Answering a /dev/fuse request on the CPU of the process that made it.
//!
//! A process that walks a tree (`ls -lR`, `find`, `cp -r`) makes one request at a time and
//! sleeps until it is answered. Over /dev/fuse the kernel wakes any thread that waits to read,
//! wherever it is, so each request used to cost two wake-ups across CPUs: the answering thread
//! on an idle CPU, then the caller on its own, idle by then. On a virtual machine whose idle
//! CPUs halt, each of those is a trip through the hypervisor; a cold `ls -lR` of 20,000 files
//! took 2.7× the kernel's own ext4 here, and one request was about 13 µs.
//!
//! So a thread that answers a small request keeps itself on the CPU where the caller sleeps,
//! as a SCHED_IDLE thread: the caller's request wakes it on that same CPU, it runs once the
//! caller sleeps, and its answer wakes the caller there; a CPU that runs only SCHED_IDLE
//! threads counts as idle, so the scheduler leaves the caller where it is (kernel/sched/fair.c
//! select_idle_sibling, sched_idle_cpu). That is what FUSE over io_uring does with a queue per
//! CPU ([`crate::ring`]); here the CPU comes from the caller's `/proc/PID/stat`, read again
//! when another process asks or 2 ms have passed.
//!
//! Bulk reads are answered from anywhere at normal priority: a reader that copies one answer
//! while the next is being read goes faster on two CPUs than on one. (A process without
//! CAP_SYS_NICE may not leave SCHED_IDLE; there the thread only lets go of the CPU.) When two
//! processes take turns, following them would move the thread at each request, so it stops
//! following until one of them has been alone for a while.

use std::cell::Cell;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::sched::CpuSet;
use nix::unistd::Pid;

/// How long a caller's CPU is taken as known.
const RECHECK: Duration = Duration::from_millis(2);
/// A READ at least this large is bulk: answered where the scheduler likes, at normal priority.
pub(crate) const BULK_READ: u32 = 64 << 10;
/// After requests from two processes come this close together, the thread stops following
/// for [`CROWD_PAUSE`].
const CROWD: Duration = Duration::from_micros(500);
const CROWD_PAUSE: Duration = Duration::from_millis(20);

static ALLOWED: OnceLock<CpuSet> = OnceLock::new();
/// Whether a thread may go back from SCHED_IDLE to SCHED_OTHER: only with CAP_SYS_NICE or an
/// RLIMIT_NICE that allows nice 0 (kernel/sched/syscalls.c, can_nice), which a user's
/// process rarely has. Without it a thread that once followed a caller stays SCHED_IDLE, as
/// the io_uring queue threads are, and only its CPU is let go.
static MAY_LEAVE_IDLE: OnceLock<bool> = OnceLock::new();

/// Answer small /dev/fuse requests near their callers from now on (`-o anycpu` leaves this
/// off). It stays off where `/proc` is not this process's pid namespace: the pids of
/// requests are the mount's, and such a `/proc` would name other processes.
pub fn enable() {
    if !proc_is_ours() {
        tracing::info!("/proc does not show this process: requests are answered from any CPU");
        return;
    }
    // What the process may run on: the set a thread goes back to when it stops following,
    // and the CPUs it may follow a caller to.
    if let Ok(all) = nix::sched::sched_getaffinity(Pid::from_raw(0)) {
        let _ = MAY_LEAVE_IDLE.set(may_leave_idle());
        let _ = ALLOWED.set(all);
    }
}

/// Whether this process's threads may go back from SCHED_IDLE to SCHED_OTHER, tried on a
/// thread of its own.
fn may_leave_idle() -> bool {
    std::thread::spawn(|| set_policy(libc::SCHED_IDLE) && set_policy(libc::SCHED_OTHER))
        .join()
        .unwrap_or(false)
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct State {
    /// The CPU this thread is kept on.
    cpu: Option<usize>,
    /// Whether it is a SCHED_IDLE thread.
    idle: bool,
    /// The process of the last request, and when it came.
    pid: u32,
    last: Option<Instant>,
    /// When `pid`'s CPU was last read.
    checked: Option<Instant>,
    /// Following resumes then (two processes were taking turns).
    paused_until: Option<Instant>,
}

thread_local! {
    static STATE: Cell<State> = Cell::new(State::default());
}

/// What to do before answering.
#[derive(Debug, PartialEq)]
enum Step {
    Stay,
    /// Any allowed CPU, normal priority.
    Release,
    /// Read where the caller is and go there.
    Locate,
}

/// The decision, apart from the system calls that carry it out.
fn step(s: &mut State, pid: u32, bulk: bool, now: Instant) -> Step {
    if pid != s.pid {
        if s.last.is_some_and(|t| now.duration_since(t) < CROWD) {
            s.paused_until = Some(now + CROWD_PAUSE);
        }
        s.pid = pid;
        s.checked = None;
    }
    s.last = Some(now);
    if bulk || s.paused_until.is_some_and(|t| now < t) {
        // The next small request locates the caller again.
        s.checked = None;
        return Step::Release;
    }
    s.paused_until = None;
    // Where the last look found a caller that cannot be followed (a CPU this process may not
    // use, a /proc that hides it), that too stands until the next look.
    if s.checked.is_some_and(|t| now.duration_since(t) < RECHECK) {
        return Step::Stay;
    }
    s.checked = Some(now);
    Step::Locate
}

/// Before answering a request of process `pid` (0: the kernel's own, or from another pid
/// namespace): keep the calling thread where that process sleeps, or let it go for `bulk`.
pub(crate) fn settle(pid: u32, bulk: bool) {
    let Some(all) = ALLOWED.get() else { return };
    if pid == 0 {
        return;
    }
    let mut s = STATE.with(Cell::get);
    match step(&mut s, pid, bulk, Instant::now()) {
        Step::Stay => {}
        Step::Release => release(&mut s, all),
        Step::Locate => match cpu_of(pid) {
            Some(cpu) if all.is_set(cpu).unwrap_or(false) => pin(&mut s, cpu),
            _ => release(&mut s, all),
        },
    }
    STATE.with(|c| c.set(s));
}

/// Keep this thread on `cpu`, as a SCHED_IDLE thread.
fn pin(s: &mut State, cpu: usize) {
    if s.cpu == Some(cpu) {
        return;
    }
    if confine(cpu) {
        if !s.idle {
            s.idle = set_policy(libc::SCHED_IDLE);
        }
        s.cpu = Some(cpu);
    }
}

/// Keep the calling thread on `cpu`; false when it is not a CPU this process may use.
pub(crate) fn confine(cpu: usize) -> bool {
    let mut one = CpuSet::new();
    one.set(cpu).is_ok() && nix::sched::sched_setaffinity(Pid::from_raw(0), &one).is_ok()
}

/// Stop following: any allowed CPU, normal priority.
fn release(s: &mut State, all: &CpuSet) {
    if s.cpu.take().is_some() {
        let _ = nix::sched::sched_setaffinity(Pid::from_raw(0), all);
    }
    if s.idle && MAY_LEAVE_IDLE.get() == Some(&true) {
        s.idle = !set_policy(libc::SCHED_OTHER);
    }
}

/// Set the calling thread's scheduling policy (priority 0); false if refused.
pub(crate) fn set_policy(policy: libc::c_int) -> bool {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler reads the sched_param it is given, which lives across the
    // call; pid 0 is the calling thread.
    let ok = unsafe { libc::sched_setscheduler(0, policy, &param) } == 0;
    if !ok {
        tracing::debug!("sched_setscheduler: {}", std::io::Error::last_os_error());
    }
    ok
}

/// The CPU process (or thread) `pid` last ran on, from its `/proc/PID/stat`.
fn cpu_of(pid: u32) -> Option<usize> {
    uml::procfs::Stat::read(pid)?.processor.map(|c| c as usize)
}

/// Whether `/proc` is of this process's pid namespace: its `self` names this process.
fn proc_is_ours() -> bool {
    std::fs::read_link("/proc/self")
        .ok()
        .and_then(|l| l.to_str()?.parse::<u32>().ok())
        == Some(std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `step` the way `settle` does, with the thread's CPU following the outcome (a
    /// caller found on CPU 1).
    fn run(s: &mut State, pid: u32, bulk: bool, at: Instant) -> Step {
        let st = step(s, pid, bulk, at);
        match st {
            Step::Release => s.cpu = None,
            Step::Locate => s.cpu = Some(1),
            Step::Stay => {}
        }
        st
    }

    #[test]
    fn a_caller_that_cannot_be_followed_is_looked_for_once_per_recheck() {
        let t0 = Instant::now();
        let us = |n| t0 + Duration::from_micros(n);
        let mut s = State::default();
        // Its CPU is one this process may not use: the thread stays where it is.
        assert_eq!(step(&mut s, 7, false, us(0)), Step::Locate);
        assert_eq!(step(&mut s, 7, false, us(10)), Step::Stay);
        assert_eq!(step(&mut s, 7, false, us(1_500)), Step::Stay);
        assert_eq!(step(&mut s, 7, false, us(2_000)), Step::Locate);
        assert_eq!(s.cpu, None);
    }

    #[test]
    fn one_caller_is_located_once_then_again_after_recheck() {
        let t0 = Instant::now();
        let us = |n| t0 + Duration::from_micros(n);
        let mut s = State::default();
        assert_eq!(run(&mut s, 7, false, us(0)), Step::Locate);
        assert_eq!(run(&mut s, 7, false, us(10)), Step::Stay);
        assert_eq!(run(&mut s, 7, false, us(1_999)), Step::Stay);
        assert_eq!(run(&mut s, 7, false, us(2_000)), Step::Locate);
        assert_eq!(run(&mut s, 7, false, us(2_010)), Step::Stay);
        // Another process, one at a time: located at once.
        assert_eq!(run(&mut s, 8, false, us(5_000)), Step::Locate);
        assert_eq!(run(&mut s, 8, false, us(5_010)), Step::Stay);
    }

    #[test]
    fn a_bulk_read_lets_go_and_the_next_small_request_locates_again() {
        let t0 = Instant::now();
        let us = |n| t0 + Duration::from_micros(n);
        let mut s = State::default();
        assert_eq!(run(&mut s, 7, false, us(0)), Step::Locate);
        assert_eq!(run(&mut s, 7, true, us(10)), Step::Release);
        assert_eq!(run(&mut s, 7, true, us(20)), Step::Release);
        assert_eq!(run(&mut s, 7, false, us(30)), Step::Locate);
    }

    #[test]
    fn two_processes_taking_turns_are_not_followed_until_one_is_alone() {
        let t0 = Instant::now();
        let us = |n| t0 + Duration::from_micros(n);
        let mut s = State::default();
        assert_eq!(run(&mut s, 7, false, us(0)), Step::Locate);
        assert_eq!(run(&mut s, 8, false, us(20)), Step::Release);
        assert_eq!(run(&mut s, 7, false, us(40)), Step::Release);
        assert_eq!(run(&mut s, 7, false, us(19_000)), Step::Release);
        // 20 ms after the last turn, 7 is alone.
        assert_eq!(run(&mut s, 7, false, us(40 + 20_000)), Step::Locate);
        assert_eq!(run(&mut s, 7, false, us(40 + 20_010)), Step::Stay);
    }

    #[test]
    fn root_may_leave_sched_idle_and_a_thread_without_cap_sys_nice_may_not() {
        assert!(nix::unistd::geteuid().is_root(), "the tests run as root");
        assert!(may_leave_idle());
        // A nice limit that allows nice 0 would also let it (can_nice): the usual 0.
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit read or write the one rlimit they are given, which
        // lives across the calls.
        unsafe {
            assert_eq!(libc::getrlimit(libc::RLIMIT_NICE, &mut lim), 0);
            lim.rlim_cur = 0;
            assert_eq!(libc::setrlimit(libc::RLIMIT_NICE, &lim), 0);
        }
        // Capabilities are per thread, and a thread inherits its creator's.
        let without = std::thread::spawn(|| {
            let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
            let eff = status
                .lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .unwrap();
            let eff = u64::from_str_radix(eff.trim(), 16).unwrap();
            const CAP_SYS_NICE: u32 = 23;
            drop_capabilities(eff & !(1 << CAP_SYS_NICE));
            may_leave_idle()
        });
        assert!(!without.join().unwrap());
    }

    /// Keep only `keep` of the calling thread's effective and permitted capabilities.
    fn drop_capabilities(keep: u64) {
        #[repr(C)]
        struct Header {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        #[derive(Clone, Copy)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        const VERSION_3: u32 = 0x2008_0522;
        let header = Header {
            version: VERSION_3,
            pid: 0,
        };
        let half = |shift: u32| Data {
            effective: (keep >> shift) as u32,
            permitted: (keep >> shift) as u32,
            inheritable: 0,
        };
        let data = [half(0), half(32)];
        // SAFETY: capset reads a version-3 header and two data structs, which are laid out
        // as the kernel's (repr(C), u32 fields) and live across the call; pid 0 is this thread.
        let r = unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) };
        assert_eq!(r, 0, "capset: {}", std::io::Error::last_os_error());
    }

    #[test]
    fn this_process_is_in_its_proc_and_its_cpu_is_one_it_may_use() {
        assert!(proc_is_ours());
        let cpu = cpu_of(nix::unistd::gettid().as_raw() as u32).expect("own stat");
        let allowed = nix::sched::sched_getaffinity(Pid::from_raw(0)).unwrap();
        assert!(allowed.is_set(cpu).unwrap(), "CPU {cpu}");
    }
}
