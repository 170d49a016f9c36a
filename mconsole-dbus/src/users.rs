//! The guests a system umld runs for its callers: each caller that is neither root nor umld's
//! own user gets its own uml_dir, `<uml_dir>/users/<uid>/`, which it owns, and its guests'
//! kernels run as it ([`uml::launch::Launch::spawn_child_as`]). A guest's hostfs view of the
//! host, its disks and everything else its kernel opens then carry exactly the caller's rights.
//!
//! The caller owns its directory and everything in it, so umld (root) never touches anything
//! there by path: every directory is opened without following symlinks, its owner and type
//! checked on the open descriptor, and files are made anew (`O_EXCL`) relative to it.

use std::ffi::OsStr;
use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{Mode, fchmod, fstat, mkdirat};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, unlinkat};

use crate::access::Caller;
use crate::error::Error;

/// The directory in the service's uml_dir that holds the callers' uml_dirs.
pub(crate) const USERS: &str = "users";

/// The runtime directory (init scripts, boot logs) inside a caller's uml_dir, as
/// [`uml::launch::runtime_dir`] names it.
const RUNTIME: &str = ".umlkit";

/// `<uml_dir>/users/<uid>`: where the guests umld launches for `uid` live.
pub(crate) fn user_dir(uml_dir: &Path, uid: u32) -> PathBuf {
    uml_dir.join(USERS).join(uid.to_string())
}

/// The uid whose uml_dir `dir` is (`<uml_dir>/users/<uid>`), if it is one.
pub(crate) fn uid_of_dir(uml_dir: &Path, dir: &Path) -> Option<u32> {
    let users = dir.parent()?;
    if users.parent()? != uml_dir || users.file_name()? != OsStr::new(USERS) {
        return None;
    }
    let name = dir.file_name()?.to_str()?;
    // Only the canonical spelling: "0100" must not stand for 100.
    let uid: u32 = name.parse().ok()?;
    (uid.to_string() == name).then_some(uid)
}

/// The callers' uml_dirs that exist now, with their uids (for adoption at start and by the
/// periodic scan). Bounded: at most 10,000 entries are looked at.
pub(crate) fn existing(uml_dir: &Path) -> Vec<(u32, PathBuf)> {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(uml_dir.join(USERS)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten().take(10_000) {
        let dir = entry.path();
        let Some(uid) = uid_of_dir(uml_dir, &dir) else {
            continue;
        };
        // Its own, and a directory, not a symlink.
        if std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir() && m.uid() == uid) {
            out.push((uid, dir));
        }
    }
    out
}

fn failed(what: &Path, e: impl std::fmt::Display) -> Error {
    Error::LaunchFailed(format!("cannot prepare {}: {e}", what.display()))
}

/// Opens the directory `name` in `parent`, creating it (`mode`, then owned by `owner`) when
/// missing, never through a symlink; it must then be a directory owned by `owner` that nobody
/// else may write in.
fn open_dir(
    parent: &OwnedFd,
    name: &str,
    mode: u32,
    owner: (u32, u32),
    shown: &Path,
) -> Result<OwnedFd, Error> {
    match mkdirat(parent, name, Mode::from_bits_truncate(mode)) {
        Ok(()) => {
            let fd = openat(
                parent,
                name,
                OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY,
                Mode::empty(),
            )
            .map_err(|e| failed(shown, e))?;
            // The exact mode, whatever the umask took away.
            fchmod(&fd, Mode::from_bits_truncate(mode)).map_err(|e| failed(shown, e))?;
            fchown(
                &fd,
                Some(Uid::from_raw(owner.0)),
                Some(Gid::from_raw(owner.1)),
            )
            .map_err(|e| failed(shown, e))?;
            return checked(fd, owner.0, shown);
        }
        Err(Errno::EEXIST) => {}
        Err(e) => return Err(failed(shown, e)),
    }
    let fd = openat(
        parent,
        name,
        OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY,
        Mode::empty(),
    )
    .map_err(|e| failed(shown, format!("{e} (a symlink or another file is there?)")))?;
    checked(fd, owner.0, shown)
}

fn checked(fd: OwnedFd, uid: u32, shown: &Path) -> Result<OwnedFd, Error> {
    let st = fstat(&fd).map_err(|e| failed(shown, e))?;
    if st.st_uid != uid {
        return Err(failed(
            shown,
            format!("it belongs to uid {}, not to uid {uid}", st.st_uid),
        ));
    }
    if st.st_mode & 0o022 != 0 {
        return Err(failed(
            shown,
            format!(
                "others may write in it (mode {:04o}); make it 0700",
                st.st_mode & 0o7777
            ),
        ));
    }
    Ok(fd)
}

/// A caller's uml_dir, ready for a launch: `<uml_dir>/users/<uid>/` and its runtime directory,
/// both the caller's (mode 0700).
#[derive(Debug)]
pub(crate) struct UserDir {
    pub dir: PathBuf,
    pub runtime: PathBuf,
    runtime_fd: OwnedFd,
    owner: (u32, u32),
}

/// Makes (or opens and checks) `caller`'s uml_dir in `uml_dir`: `users/` is the service's
/// (0755), `users/<uid>/` and its runtime directory the caller's (0700).
///
/// # Errors
/// [`Error::LaunchFailed`] when a directory is a symlink, someone else's, or writable by
/// others, or cannot be made.
pub(crate) fn prepare(uml_dir: &Path, caller: &Caller) -> Result<UserDir, Error> {
    let me = (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    );
    let owner = (caller.uid, caller.gid);
    std::fs::DirBuilder::new()
        .recursive(true)
        .create(uml_dir)
        .map_err(|e| failed(uml_dir, e))?;
    let top: OwnedFd = File::open(uml_dir).map_err(|e| failed(uml_dir, e))?.into();
    let users_path = uml_dir.join(USERS);
    let users = open_dir(&top, USERS, 0o755, me, &users_path)?;
    let dir = user_dir(uml_dir, caller.uid);
    let mine = open_dir(&users, &caller.uid.to_string(), 0o700, owner, &dir)?;
    let runtime = dir.join(RUNTIME);
    let runtime_fd = open_dir(&mine, RUNTIME, 0o700, owner, &runtime)?;
    Ok(UserDir {
        dir,
        runtime,
        runtime_fd,
        owner,
    })
}

impl UserDir {
    /// Makes the file `name` in the runtime directory anew (whatever was there is removed
    /// first, and a file made meanwhile is refused), the caller's, with `content`.
    pub(crate) fn create(&self, name: &str, mode: u32, content: &[u8]) -> Result<File, Error> {
        let shown = self.runtime.join(name);
        match unlinkat(&self.runtime_fd, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(failed(&shown, e)),
        }
        let fd = openat(
            &self.runtime_fd,
            name,
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(mode),
        )
        .map_err(|e| failed(&shown, e))?;
        fchown(
            &fd,
            Some(Uid::from_raw(self.owner.0)),
            Some(Gid::from_raw(self.owner.1)),
        )
        .map_err(|e| failed(&shown, e))?;
        fchmod(&fd, Mode::from_bits_truncate(mode)).map_err(|e| failed(&shown, e))?;
        let mut file = File::from(fd);
        file.write_all(content).map_err(|e| failed(&shown, e))?;
        Ok(file)
    }
}

/// Removes a caller guest's init script and boot log from its runtime directory, through
/// descriptors (the directory is the caller's); nothing else is touched.
pub(crate) fn remove_runtime_files(uml_dir: &Path, uid: u32, umid: &str) {
    let open = |parent: &OwnedFd, name: &str| {
        openat(
            parent,
            name,
            OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY,
            Mode::empty(),
        )
        .ok()
    };
    let Ok(top) = File::open(uml_dir) else { return };
    let top = OwnedFd::from(top);
    let Some(runtime) = open(&top, USERS)
        .and_then(|users| open(&users, &uid.to_string()))
        .and_then(|mine| open(&mine, RUNTIME))
    else {
        return;
    };
    for suffix in ["init", "log"] {
        let _ = unlinkat(
            &runtime,
            format!("{umid}.{suffix}").as_str(),
            UnlinkatFlags::NoRemoveDir,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn me() -> Caller {
        let (uid, gid) = (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        );
        Caller {
            uid,
            gid,
            groups: vec![gid],
            trusted: false,
        }
    }

    #[test]
    fn a_callers_dir_is_made_private_and_its_files_anew() {
        let top = tempfile::tempdir().unwrap();
        let dir = prepare(top.path(), &me()).unwrap();
        assert_eq!(dir.dir, user_dir(top.path(), me().uid));
        let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().mode() & 0o7777;
        assert_eq!(mode(&top.path().join(USERS)), 0o755);
        assert_eq!(mode(&dir.dir), 0o700);
        assert_eq!(mode(&dir.runtime), 0o700);
        // A symlink planted where a file is made is replaced, not followed.
        let target = top.path().join("target");
        std::fs::write(&target, b"keep").unwrap();
        std::os::unix::fs::symlink(&target, dir.runtime.join("g.log")).unwrap();
        dir.create("g.log", 0o644, b"new").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
        let made = std::fs::symlink_metadata(dir.runtime.join("g.log")).unwrap();
        assert!(made.is_file());
        assert_eq!((made.uid(), made.mode() & 0o777), (me().uid, 0o644));
        // Opened again: the same directories serve.
        prepare(top.path(), &me()).unwrap();
    }

    #[test]
    fn a_callers_dir_that_is_a_symlink_or_open_to_others_is_refused() {
        let top = tempfile::tempdir().unwrap();
        std::fs::create_dir(top.path().join(USERS)).unwrap();
        std::fs::set_permissions(
            top.path().join(USERS),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let mine = user_dir(top.path(), me().uid);
        std::os::unix::fs::symlink(elsewhere.path(), &mine).unwrap();
        let err = prepare(top.path(), &me()).unwrap_err().to_string();
        assert!(err.contains("symlink"), "{err}");
        assert!(
            std::fs::read_dir(elsewhere.path())
                .unwrap()
                .next()
                .is_none(),
            "nothing was made through the symlink"
        );
        std::fs::remove_file(&mine).unwrap();
        std::fs::create_dir(&mine).unwrap();
        std::fs::set_permissions(&mine, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = prepare(top.path(), &me()).unwrap_err().to_string();
        assert!(err.contains("others may write in it"), "{err}");
    }

    #[test]
    fn only_canonical_uids_directly_in_users_name_a_callers_dir() {
        let top = Path::new("/run/uml");
        assert_eq!(
            uid_of_dir(top, Path::new("/run/uml/users/1000")),
            Some(1000)
        );
        assert_eq!(uid_of_dir(top, Path::new("/run/uml/users/01000")), None);
        assert_eq!(uid_of_dir(top, Path::new("/run/uml/users/x")), None);
        assert_eq!(uid_of_dir(top, Path::new("/run/uml/other/1000")), None);
        assert_eq!(uid_of_dir(top, Path::new("/elsewhere/users/1000")), None);
    }
}
