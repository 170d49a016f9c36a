//! `umlfs SOURCE MOUNTPOINT [-o OPTS] [-f]`: show a UML guest's disks on the host, read-only.
//!
//! Also run by mount.fuse3 for `mount -t fuse.umlfs SOURCE DIR` and fstab lines. It returns
//! once the mount is ready and serves in the background (`-f` stays in the foreground): the
//! fork happens after the FUSE session is set up and before any thread is started.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use fuser::{Config, MountOption, SessionACL};

use umlfs::fuse::UmlFs;
use umlfs::mount::{self, Prepared};
use umlfs::options::MountOptions;
use umlfs::source::Source;

/// Show a running (or stopped) UML guest's disks on the host, read-only.
#[derive(Debug, Parser)]
#[command(name = "umlfs", version)]
struct Args {
    /// UMID:/PATH, UMID:, UMID:ubdN:/PATH, /path/disk.img or /path/disk.img:/PATH
    source: String,
    /// Where to mount.
    mountpoint: PathBuf,
    /// Mount options, comma-separated (may be repeated).
    #[arg(short = 'o', action = clap::ArgAction::Append)]
    options: Vec<String>,
    /// Stay in the foreground.
    #[arg(short = 'f')]
    foreground: bool,
    /// Show diagnostics (also RUST_LOG).
    #[arg(short = 'v')]
    verbose: bool,
}

/// What umlfs's arguments complete to beyond clap's own completion, by clap argument id.
const COMPLETION_HOOKS: &[(&str, uml::options::complete::Hook)] = &[
    // A running guest as `UMID:`, or an image file. (Its uml_dir is `-o uml_dir=DIR`, not an
    // option of its own.)
    ("source", uml::options::complete::Hook::Source),
    // `-o`: umlfs's own mount options, a piece at a time.
    (
        "options",
        uml::options::complete::Hook::CommaList(umlfs::options::OPTIONS),
    ),
];

/// One malloc arena for the whole daemon. With glibc's default of one per thread, the two
/// request threads' arenas fragmented a little more with every cold walk (resident memory grew
/// by 120 KiB over ten `find` runs over 20,000 files); with one it stays flat, and the walks
/// are as fast (small allocations come from per-thread caches either way).
fn one_malloc_arena() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets a parameter of the allocator; it is called before any thread
    // exists, and M_ARENA_MAX is a parameter glibc documents for this call.
    let _ = unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
}

fn main() -> ExitCode {
    // `umlfs generate all --out-dir DIR` (scripts/generate) writes umlfs(1) and its
    // completions; no mount source is ever spelled like that.
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv.len() == 5 && argv[1] == "generate" && argv[2] == "all" && argv[3] == "--out-dir" {
        return match generate(std::path::Path::new(&argv[4])) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("umlfs: {e}");
                ExitCode::from(1)
            }
        };
    }
    one_malloc_arena();
    let args = Args::parse();
    let filter = if args.verbose {
        tracing_subscriber::EnvFilter::new("debug")
    } else {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"))
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let mut opts = MountOptions::default();
    for list in &args.options {
        if let Err(e) = opts.parse_into(list) {
            eprintln!("umlfs: {e}");
            return ExitCode::from(2);
        }
    }
    let source = match Source::parse(&args.source) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("umlfs: {}", uml::text::with_causes(&e));
            return ExitCode::from(2);
        }
    };
    if !args.mountpoint.is_dir() {
        eprintln!(
            "umlfs: the mount point {} is not a directory",
            args.mountpoint.display()
        );
        return ExitCode::from(1);
    }
    // Absolute: the daemon leaves its working directory.
    let mountpoint =
        std::path::absolute(&args.mountpoint).unwrap_or_else(|_| args.mountpoint.clone());
    if opts.rw_requested {
        eprintln!(
            "umlfs: {}: mounting read-only; umlfs never writes to a guest's disk",
            args.source
        );
    }
    let prepared = match mount::prepare(&source, &opts, &mountpoint) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("umlfs: {}: {}", args.source, uml::text::with_causes(&e));
            return ExitCode::from(1);
        }
    };
    for n in &prepared.notes {
        eprintln!("umlfs: {n}");
    }
    let config = fuse_config(&opts, &prepared);
    if args.foreground {
        return serve(prepared, &mountpoint, &config, None);
    }
    daemonize(prepared, &mountpoint, &config)
}

fn fuse_config(opts: &MountOptions, p: &Prepared) -> Config {
    let mut mo = vec![
        MountOption::RO,
        MountOption::NoSuid,
        MountOption::NoDev,
        MountOption::FSName(p.fsname.replace([',', ' '], "_")),
        // fuser's direct mount drops MountOption::Subtype; the raw option keeps it.
        MountOption::CUSTOM("subtype=umlfs".into()),
    ];
    if opts.noexec {
        mo.push(MountOption::NoExec);
    }
    if opts.allow_other || opts.default_permissions {
        mo.push(MountOption::DefaultPermissions);
    }
    let mut c = Config::default();
    c.mount_options = mo;
    c.acl = if opts.allow_other {
        SessionACL::All
    } else if opts.allow_root {
        SessionACL::RootAndOwner
    } else {
        SessionACL::Owner
    };
    c.n_threads = Some(2);
    c.clone_fd = true;
    c
}

/// Mount and serve until unmounted. `ready` (the daemon's pipe) gets "OK" or the error.
fn serve(
    p: Prepared,
    mountpoint: &std::path::Path,
    config: &Config,
    ready: Option<OwnedFd>,
) -> ExitCode {
    let frozen = p.frozen;
    let follow = p.follow;
    if !p.anycpu {
        umlfs::near::enable();
    }
    let view = Arc::new(p.view);
    let rings = (!p.nouring).then(|| {
        umlfs::ring::Slot::new(match config.acl {
            SessionACL::All => umlfs::ring::Access::All,
            SessionACL::RootAndOwner => umlfs::ring::Access::RootAndOwner,
            SessionACL::Owner => umlfs::ring::Access::Owner,
        })
    });
    let fs = UmlFs {
        view: view.clone(),
        rings: rings.clone(),
    };
    // Before the session: INIT starts the io_uring queue threads.
    let signals = block_stop_signals();
    let mut session = match fuser::Session::new(fs, mountpoint, config) {
        Ok(s) => s,
        Err(e) => {
            let msg = format!("cannot mount on {}: {e}", mountpoint.display());
            report(ready, &msg);
            return ExitCode::from(1);
        }
    };
    if let Some(r) = &rings {
        use std::os::fd::AsFd;
        match r.start(session.as_fd()) {
            Ok(true) => tracing::info!("serving requests on one io_uring queue per CPU"),
            Ok(false) => {}
            // The threads wait for the device in vain and end; the kernel, which holds every
            // request until each queue registers, is released when the session ends.
            Err(e) => {
                let msg = format!("cannot hand the FUSE device to the io_uring queues: {e}");
                report(ready, &msg);
                return ExitCode::from(1);
            }
        }
    }
    mount::raise_readahead(mountpoint);
    if let Some(set) = signals {
        unmount_on_signal(set, session.unmount_callable());
    }
    let notifier = session.notifier();
    let daemon = ready.is_some();
    report(ready, "OK");
    if daemon {
        detach_stdio();
    }
    if let Some(f) = follow
        && let Err(e) = mount::spawn_follower(view.clone(), f, notifier.clone())
    {
        tracing::warn!("cannot follow the guest's mount table: {e}");
    }
    if !frozen && let Err(e) = mount::spawn_freshness(view, notifier) {
        tracing::warn!("cannot watch the images for changes: {e}");
    }
    match session.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("the FUSE session ended with an error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Block SIGINT, SIGTERM and SIGHUP in the calling thread, before any other thread exists, so
/// that every thread inherits the mask and only the waiting thread of [`unmount_on_signal`]
/// receives them (a thread without the mask would die of them and end the process without
/// unmounting).
fn block_stop_signals() -> Option<nix::sys::signal::SigSet> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(s);
    }
    match set.thread_block() {
        Ok(()) => Some(set),
        Err(e) => {
            tracing::warn!("cannot block signals: {e}");
            None
        }
    }
}

/// SIGINT, SIGTERM and SIGHUP (blocked by [`block_stop_signals`]) unmount (lazily) and so end
/// the session cleanly.
fn unmount_on_signal(set: nix::sys::signal::SigSet, mut unmounter: fuser::SessionUnmounter) {
    let spawned = std::thread::Builder::new()
        .name("umlfs-signal".into())
        .spawn(move || {
            if let Ok(sig) = set.wait() {
                tracing::info!("{sig}: unmounting");
                if let Err(e) = unmounter.unmount() {
                    tracing::warn!("unmount on {sig} failed: {e}");
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot start the signal thread: {e}");
    }
}

fn report(ready: Option<OwnedFd>, msg: &str) {
    match ready {
        Some(fd) => {
            let mut f = std::fs::File::from(fd);
            let _ = f.write_all(msg.as_bytes());
        }
        None if msg != "OK" => eprintln!("umlfs: {msg}"),
        None => {}
    }
}

fn detach_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let _ = nix::unistd::dup2_stdin(&null);
        let _ = nix::unistd::dup2_stdout(&null);
        let _ = nix::unistd::dup2_stderr(&null);
    }
}

/// Fork; the child sets up the FUSE session (mount and INIT) and reports on a pipe, the
/// parent waits for that report and exits with it. No thread exists before the fork.
fn daemonize(p: Prepared, mountpoint: &std::path::Path, config: &Config) -> ExitCode {
    let (rd, wr) = match nix::unistd::pipe() {
        Ok(x) => x,
        Err(e) => {
            eprintln!("umlfs: cannot create a pipe: {e}");
            return ExitCode::from(1);
        }
    };
    // SAFETY: the process is single-threaded here (no runtime, no threads started yet), so
    // the child may run arbitrary code after fork.
    match unsafe { nix::unistd::fork() } {
        Err(e) => {
            eprintln!("umlfs: cannot fork: {e}");
            ExitCode::from(1)
        }
        Ok(nix::unistd::ForkResult::Child) => {
            drop(rd);
            let _ = nix::unistd::setsid();
            // Keep no directory busy (everything the view needs is open or absolute).
            let _ = std::env::set_current_dir("/");
            serve(p, mountpoint, config, Some(wr))
        }
        Ok(nix::unistd::ForkResult::Parent { .. }) => {
            drop(wr);
            let mut f = std::fs::File::from(rd);
            let mut msg = String::new();
            let _ = f.read_to_string(&mut msg);
            if msg.starts_with("OK") {
                ExitCode::SUCCESS
            } else if msg.is_empty() {
                eprintln!("umlfs: the mount process died before the mount was ready");
                ExitCode::from(1)
            } else {
                eprintln!("umlfs: {msg}");
                ExitCode::from(1)
            }
        }
    }
}

/// Writes umlfs(1) and the umlfs completions under `dir/man` and `dir/completions`.
fn generate(dir: &std::path::Path) -> std::io::Result<()> {
    use clap::CommandFactory;
    use uml::options::complete;
    use uml::options::man::{self, Block, Meta, Section};
    let meta = Meta::umlkit(env!("CARGO_PKG_VERSION"));
    let para = |t: &str| Block::Para(t.to_owned());
    let item = |a: &str, b: &str| Block::Item(a.to_owned(), b.to_owned());
    let code = |t: &str| Block::Code(t.to_owned());
    let sections = vec![
        Section {
            title: "SOURCES",
            blocks: vec![
                item(
                    "UMID:/PATH, UMID:",
                    "A running guest: its own tree as the guest sees it, each ubd disk at its guest mount point, hostfs mounts as read-only passthroughs, tmpfs, proc and sysfs as empty directories (listed on stderr; a PATH on one of them with no disk below is refused). The view follows the guest's mount table: a disk the guest mounts later appears, one it unmounts disappears, within about a second.",
                ),
                item("UMID:ubdN:/PATH", "One disk of a running guest."),
                item(
                    "/path/disk.img[:/PATH]",
                    "A stopped guest's image, or a COW file (v1, v2, v3) read through to its backing file.",
                ),
            ],
        },
        Section {
            title: "MOUNT OPTIONS",
            blocks: {
                let mut b = vec![para(
                    "Given with -o, comma-separated (-o may be repeated), by mount -o, or in the options column of an fstab line:",
                )];
                b.extend(
                    umlfs::options::OPTIONS
                        .iter()
                        .map(|(spelled, help)| item(spelled, help)),
                );
                b.push(para(
                    "Options meant for mount(8), mount.fuse3 or other readers of fstab (defaults, nofail, noauto, user, users, _netdev, x-*, the atime family, dev, suid, exec and their no forms) are accepted and ignored; nosuid and nodev always hold. Any other option is refused, by name.",
                ));
                b
            },
        },
        Section {
            title: "SAFETY",
            blocks: vec![para(
                "Images are opened read-only and never locked or written; an ext3/ext4 journal is replayed in memory, so a running guest's committed changes are visible and its disk is untouched. The mount is always ro, nosuid and nodev, whatever -o rw, dev or suid say. Other users see nothing unless allow_other is given.",
            )],
        },
        Section {
            title: "EXTENDED ATTRIBUTES",
            blocks: vec![
                para(
                    "By default the guest's extended attributes are shown (getfattr -d), and its POSIX ACLs are declared to the kernel, which caches them and enforces them with the mode bits where permissions are checked (allow_other, default_permissions, or a mount made by root).",
                ),
                item(
                    "-o noxattr",
                    "Shows no extended attributes and no ACLs, as virtiofsd does by default: the kernel learns at the first query that there are none and asks no more, which saves one round trip per file on a cold ls -l. Access is then decided by the mode bits alone, so a file that has an ACL shows no group or other permission bits: only its owner can read it through the mount, and nobody gets more than the guest's ACL gives. ls -l shows no +.",
                ),
            ],
        },
        Section {
            title: "SPEED",
            blocks: vec![
                para(
                    "A process that walks a tree (ls -lR, find, cp -r) makes one request at a time and sleeps until it is answered. Over /dev/fuse the kernel wakes whichever umlfs thread waits, on any CPU, and on a virtual machine whose idle CPUs halt, each wake-up of an idle CPU is a trip through the hypervisor. So the thread that answers a small request moves to the CPU where the caller sleeps and runs there at the lowest priority (SCHED_IDLE): the request, the answer and the caller's wake-up stay on one CPU, and a cold ls -lR takes about 1.4x the kernel's own ext4 instead of 2.7x. The caller's CPU is read from /proc/PID/stat, again when another process asks or after 2 ms. Reads of 64 KiB and more are answered from any CPU at normal priority, and so is everything while two processes take turns; a user's umlfs (without CAP_SYS_NICE) may not raise a thread back to normal priority, so its threads stay SCHED_IDLE once they have followed a caller, as the io_uring threads are, and under full CPU load its big reads slow down.",
                ),
                item(
                    "-o anycpu",
                    "Answers every request from whichever CPU the scheduler picks, at normal priority.",
                ),
                para(
                    "Where the kernel offers FUSE over io_uring (Linux 6.14 and later, once root has set /sys/module/fuse/parameters/enable_uring to Y before the mount), umlfs serves each CPU's requests from a thread on that CPU, which the kernel itself routes: a cold ls -lR takes about 1.1x the kernel's ext4. Reading a big file sequentially is then about 1.5x slower than over /dev/fuse: one thread per CPU answers the readahead. uml doctor says whether io_uring is on.",
                ),
                item(
                    "-o nouring",
                    "Serves every request through /dev/fuse even where io_uring is offered: for a mount that mostly streams big files.",
                ),
            ],
        },
        Section {
            title: "EXAMPLES",
            blocks: vec![
                code("umlfs web1:/ /mnt/web1"),
                code("mount -t fuse.umlfs web1:/ /mnt/web1"),
                para("An /etc/fstab line:"),
                code("web1:/ /mnt/web1 fuse.umlfs ro,noauto,allow_other 0 0"),
                code("umlfs -o snapshot web1:/srv/data /mnt/data"),
                code("umount /mnt/web1"),
            ],
        },
        Section {
            title: "SEE ALSO",
            blocks: vec![para(
                "uml(1), uml-cow(1), mount(8), fusermount3(1), fstab(5)",
            )],
        },
    ];
    let write = |path: std::path::PathBuf, text: &str| -> std::io::Result<()> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, text)
    };
    for page in man::command_pages(Args::command(), "1", &meta, &sections) {
        write(dir.join("man").join(&page.file_name), &page.text)?;
    }
    for script in complete::command_scripts(Args::command(), "umlfs", COMPLETION_HOOKS)
        .map_err(std::io::Error::other)?
    {
        write(dir.join("completions").join(&script.path), &script.text)?;
    }
    Ok(())
}
