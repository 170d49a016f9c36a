//! Finding the instances of a `uml_dir`, proving which are alive, and removing the dead ones.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::*;

/// The most entries of a uml_dir that discovery looks at.
const MAX_ENTRIES: usize = 65_536;

/// Every instance directory in `uml_dir`, sorted by umid. A missing `uml_dir` holds none.
///
/// # Errors
/// [`InstanceError::ReadDir`] when the directory exists but cannot be read.
pub fn discover(uml_dir: &Path) -> Result<Vec<Instance>, InstanceError> {
    let entries = match fs::read_dir(uml_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(InstanceError::ReadDir {
                path: uml_dir.to_owned(),
                source,
            });
        }
    };
    let sockets = UnixSockets::read_under(uml_dir);
    let mut found = Vec::new();
    // A uml_dir others can write may hold any number of entries: look at a bounded number.
    for entry in entries.flatten().take(MAX_ENTRIES) {
        let Ok(file_type) = entry.file_type() else {
            continue;
        };
        if !file_type.is_dir() {
            continue;
        }
        let Some(umid) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        // umlkit keeps its own runtime files in dot-directories; the kernel never makes one
        // (a umid is at most 63 bytes, and a random one is [A-Za-z0-9]{6}).
        if umid.starts_with('.') {
            continue;
        }
        found.push(inspect(&entry.path(), &umid, &sockets));
    }
    found.sort_by(|a, b| a.umid.cmp(&b.umid));
    Ok(found)
}

/// The instance `umid` in `uml_dir`, whatever its liveness.
///
/// # Errors
/// [`InstanceError::NotFound`] naming the running instances when there is no such directory.
pub fn find(uml_dir: &Path, umid: &str) -> Result<Instance, InstanceError> {
    find_existing(uml_dir, umid).ok_or_else(|| {
        let known = discover(uml_dir)
            .unwrap_or_default()
            .into_iter()
            .filter(Instance::is_running)
            .map(|i| i.umid)
            .collect();
        InstanceError::NotFound {
            umid: umid.to_owned(),
            uml_dir: uml_dir.to_owned(),
            known,
        }
    })
}

/// The instance `umid` when its directory exists: [`find`] without the error's list of the
/// guests that do run, which costs a scan of the whole uml_dir and the host's socket table. For
/// callers that only ask whether a umid is taken (every `uml run`, before and after its guest).
pub fn find_existing(uml_dir: &Path, umid: &str) -> Option<Instance> {
    let dir = instance_dir(uml_dir, umid)?;
    Some(inspect(&dir, umid, &UnixSockets::read_under(&dir)))
}

/// `<uml_dir>/<umid>` when `umid` is a name (not empty, no `/`, not starting with `.`) and that
/// is a directory itself, not what a symlink in its place points to: a name in a uml_dir that
/// another user can write must not lead to that user's choice of instance.
pub(super) fn instance_dir(uml_dir: &Path, umid: &str) -> Option<PathBuf> {
    if umid.is_empty() || umid.contains('/') || umid.starts_with('.') {
        return None;
    }
    let dir = uml_dir.join(umid);
    fs::symlink_metadata(&dir)
        .is_ok_and(|m| m.is_dir())
        .then_some(dir)
}

/// The running instance `umid`.
///
/// # Errors
/// As [`find`], plus [`InstanceError::NotRunning`] for a stale or starting one.
pub fn find_running(uml_dir: &Path, umid: &str) -> Result<Instance, InstanceError> {
    let instance = find(uml_dir, umid)?;
    if !instance.is_running() {
        return Err(InstanceError::NotRunning {
            umid: umid.to_owned(),
            reason: instance.liveness_text(),
        });
    }
    Ok(instance)
}

/// The umid of the running instance whose kernel has host pid `pid`, if any.
pub fn umid_of_pid(uml_dir: &Path, pid: u32) -> Option<String> {
    discover(uml_dir)
        .ok()?
        .into_iter()
        .find(|i| i.pid == Some(pid) && i.is_running())
        .map(|i| i.umid)
}

pub(super) fn inspect(dir: &Path, umid: &str, sockets: &UnixSockets) -> Instance {
    let pid = read_pid_file(&dir.join("pid"));
    let seen = pid.filter(|&p| pid_alive(p)).map(|p| sockets.seen_by(p));
    let sockets: &UnixSockets = seen.as_deref().unwrap_or(sockets);
    let socket = dir.join("mconsole");
    let liveness = match pid {
        None => Liveness::Stale {
            reason: "no readable pid file".into(),
        },
        Some(pid) if !pid_alive(pid) => Liveness::Stale {
            reason: format!("pid {pid} is not running"),
        },
        Some(pid) => match fs::symlink_metadata(&socket) {
            Err(_) => {
                // The kernel writes the pid file before it binds the socket (umid.c, then
                // the mconsole initcall), so this is a booting guest, unless the pid was
                // recycled by something that is not this instance's kernel.
                if is_kernel_of(pid, umid) {
                    Liveness::Starting
                } else {
                    Liveness::Stale {
                        reason: format!("pid {pid} is not a UML kernel for {umid}"),
                    }
                }
            }
            Ok(meta) if !meta.file_type().is_socket() => Liveness::Stale {
                reason: format!(
                    "{} is not a socket (a symlink or another file)",
                    socket.display()
                ),
            },
            Ok(_) if !sockets.known => Liveness::Stale {
                reason: "cannot read /proc/net/unix to prove which process serves it".into(),
            },
            Ok(_) if sockets.held_by(&socket, pid) => Liveness::Running,
            Ok(_) if !sockets.inodes_of(&socket).is_empty() => Liveness::Stale {
                reason: format!("pid {pid} does not serve {}", socket.display()),
            },
            Ok(_) => Liveness::Stale {
                reason: format!("nothing is bound to {}", socket.display()),
            },
        },
    };
    Instance {
        umid: umid.to_owned(),
        dir: dir.to_owned(),
        pid,
        liveness,
    }
}

/// The pid in a kernel's `pid` file (decimal, then a newline), or `None` for anything else.
///
/// The file is untrusted (a uml_dir may be writable by others, a dead guest's directory by
/// its owner): it is opened without following a symlink and without blocking (a FIFO named
/// `pid` would otherwise block the open for good), and only a regular file of at most
/// 64 bytes (`PID_FILE_LIMIT`) is read.
pub fn read_pid_file(path: &Path) -> Option<u32> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_NOCTTY)
        .open(path)
        .ok()?;
    pid_from(file)
}

fn pid_from(file: fs::File) -> Option<u32> {
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.len() > PID_FILE_LIMIT {
        return None;
    }
    let mut text = String::new();
    file.take(PID_FILE_LIMIT).read_to_string(&mut text).ok()?;
    text.trim().parse().ok().filter(|&p| p > 0)
}

/// Whether a process with this pid exists (the kernel's own test in umid.c: `kill(pid, 0)`
/// succeeds or fails with anything but ESRCH).
pub fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(nix::errno::Errno::ESRCH) => false,
        Err(_) => true,
    }
}

/// Removes the stale instance directories of `uml_dir` and returns them (see [`sweep`]).
///
/// # Errors
/// [`InstanceError::ReadDir`] when `uml_dir` cannot be read.
pub fn clean(uml_dir: &Path) -> Result<Vec<Instance>, InstanceError> {
    Ok(sweep(uml_dir, false)?.removed)
}

/// Removes the instance directory of `umid` if it is stale (its kernel is gone), with the same
/// proofs as [`sweep`]: what a launcher does after a guest it started failed to boot or was
/// killed. Returns whether it did.
pub fn remove_if_stale(uml_dir: &Path, umid: &str) -> bool {
    use nix::fcntl::OFlag;
    let Some(instance) = find_existing(uml_dir, umid) else {
        return false;
    };
    if !matches!(instance.refresh().liveness, Liveness::Stale { .. }) {
        return false;
    }
    let Ok(root) = nix::fcntl::open(
        uml_dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    ) else {
        return false;
    };
    remove_if_dead(&root, &instance, false).is_ok()
}

/// What [`sweep`] did.
#[derive(Debug, Default)]
pub struct Sweep {
    /// The instance directories removed (or, in a dry run, that would be).
    pub removed: Vec<Instance>,
    /// Stale directories left alone, and why.
    pub kept: Vec<(Instance, String)>,
}

/// The files a kernel leaves in its instance directory (`arch/um/os-Linux/umid.c`,
/// `mconsole_user.c`); nothing else is ever removed.
const INSTANCE_FILES: [&str; 2] = ["pid", "mconsole"];

/// Removes the instance directories of `uml_dir` that are proven dead, as the kernel does
/// when it takes a stale one over (umid.c `remove_files_and_dir`), and only those.
///
/// A directory goes only when it holds nothing but the kernel's own files (`pid`,
/// `mconsole`) and, checked again through the directory's descriptor right before, its pid
/// is gone or is proven not to serve it. Everything is done through directory descriptors
/// opened without following symlinks (`openat`, `unlinkat`): a uml_dir that another user can
/// write cannot redirect a removal elsewhere by swapping a directory for a symlink, whoever
/// runs this. A file that is not the kernel's (someone's `docs/notes.txt`) is never removed;
/// its directory is kept and reported. With `dry_run`, nothing is removed.
///
/// # Errors
/// [`InstanceError::ReadDir`] when `uml_dir` cannot be read.
pub fn sweep(uml_dir: &Path, dry_run: bool) -> Result<Sweep, InstanceError> {
    use nix::fcntl::OFlag;
    let read_err = |e: nix::errno::Errno| InstanceError::ReadDir {
        path: uml_dir.to_owned(),
        source: io::Error::from(e),
    };
    let mut done = Sweep::default();
    let root = match nix::fcntl::open(
        uml_dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ENOENT) => return Ok(done),
        Err(e) => return Err(read_err(e)),
    };
    for instance in discover(uml_dir)? {
        if !matches!(instance.liveness, Liveness::Stale { .. }) {
            continue;
        }
        match remove_if_dead(&root, &instance, dry_run) {
            Ok(()) => done.removed.push(instance),
            Err(why) => {
                tracing::debug!(dir = %instance.dir.display(), "kept: {why}");
                done.kept.push((instance, why));
            }
        }
    }
    Ok(done)
}

/// Removes one stale instance directory through `root` (the uml_dir's descriptor), or says
/// why it stays.
fn remove_if_dead(
    root: &std::os::fd::OwnedFd,
    instance: &Instance,
    dry_run: bool,
) -> Result<(), String> {
    use nix::fcntl::{AtFlags, OFlag};
    use nix::unistd::UnlinkatFlags;
    use std::os::fd::AsRawFd;
    let umid = instance.umid.as_str();
    if umid.contains('/') || umid == "." || umid == ".." {
        return Err("not an instance name".into());
    }
    let dir = nix::fcntl::openat(
        root,
        umid,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| format!("cannot open it: {e}"))?;
    // The listing of the directory just opened (through its descriptor), not of a path.
    let listing = fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd()))
        .map_err(|e| format!("cannot list it: {e}"))?;
    let mut present = Vec::new();
    let mut unknown = Vec::new();
    for entry in listing.take(4096) {
        let entry = entry.map_err(|e| format!("cannot list it: {e}"))?;
        let name = entry.file_name();
        match INSTANCE_FILES.iter().find(|f| **f == name) {
            Some(known) => present.push(*known),
            None => unknown.push(name.to_string_lossy().into_owned()),
        }
    }
    if !unknown.is_empty() {
        unknown.sort();
        unknown.truncate(5);
        return Err(format!(
            "it holds {}, which the kernel does not make",
            unknown.join(", ")
        ));
    }
    // Dead, proven again through this descriptor: the pid file read here is the one in the
    // directory that is about to be emptied.
    if present.contains(&"pid") {
        let file = nix::fcntl::openat(
            &dir,
            "pid",
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        );
        let pid = file.ok().and_then(|fd| pid_from(fs::File::from(fd)));
        if let Some(pid) = pid
            && pid_alive(pid)
        {
            let again = instance.refresh();
            if again.pid != Some(pid) || !matches!(again.liveness, Liveness::Stale { .. }) {
                return Err(format!("pid {pid} runs again"));
            }
            if !UnixSockets::read().seen_by(pid).known {
                return Err(format!(
                    "pid {pid} runs, and /proc/net/unix cannot tell whether it serves it"
                ));
            }
        }
    }
    // Nothing but the kernel's files, and no kernel: what the kernel itself would remove.
    for (name, kind, what) in [
        ("pid", libc::S_IFREG, "a regular file"),
        ("mconsole", libc::S_IFSOCK, "a socket"),
    ] {
        let st = nix::sys::stat::fstatat(&dir, name, AtFlags::AT_SYMLINK_NOFOLLOW);
        if st.is_ok_and(|st| st.st_mode & libc::S_IFMT != kind) {
            return Err(format!("its {name} is not {what}, as the kernel makes it"));
        }
    }
    if dry_run {
        return Ok(());
    }
    for name in present {
        match nix::unistd::unlinkat(&dir, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => return Err(format!("cannot remove its {name}: {e}")),
        }
    }
    // The name may lead elsewhere by now; rmdir removes only an empty directory, and never
    // follows a symlink.
    let same = nix::sys::stat::fstatat(root, umid, AtFlags::AT_SYMLINK_NOFOLLOW)
        .ok()
        .zip(nix::sys::stat::fstat(&dir).ok())
        .is_some_and(|(a, b)| (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino));
    if !same {
        return Err("it was replaced while being removed".into());
    }
    nix::unistd::unlinkat(root, umid, UnlinkatFlags::RemoveDir)
        .map_err(|e| format!("cannot remove it: {e}"))
}
