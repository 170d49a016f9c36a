//! Private directories and files for a guest's runtime files (init script, boot log, notify
//! socket), such as the `/tmp/umlkit-<uid>` fallback used when a path under the uml_dir would
//! be too long for a unix socket. A predictable name in a directory that others can write
//! must be checked before anything is put there: another local user can create it first, or
//! plant a symlink in it that a write would follow.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::InstanceError;

fn unsafe_dir(path: &Path, reason: impl Into<String>) -> InstanceError {
    InstanceError::UnsafeRuntimeDir {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

fn io_error(path: &Path, e: impl Into<std::io::Error>) -> InstanceError {
    InstanceError::RuntimeFile {
        path: path.to_owned(),
        source: e.into(),
    }
}

/// Makes `dir` a private directory of this user's, or refuses it: creates it with mode 0700
/// when it is missing (its parents as needed); otherwise it must be a directory itself (not a
/// symlink), owned by this user and writable by no one else. A directory of this user's that
/// others can only read is narrowed to 0700. Returns its descriptor, opened `O_NOFOLLOW`, for
/// [`create_file`].
///
/// # Errors
/// [`InstanceError::UnsafeRuntimeDir`] naming the directory and what is wrong with it;
/// [`InstanceError::RuntimeFile`] when it cannot be created or opened.
pub fn private_dir(dir: &Path) -> Result<OwnedFd, InstanceError> {
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io_error(parent, e))?;
    }
    match nix::unistd::mkdir(dir, Mode::S_IRWXU) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
        Err(e) => return Err(io_error(dir, e)),
    }
    let fd = match nix::fcntl::open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ELOOP | nix::errno::Errno::ENOTDIR) => {
            return Err(unsafe_dir(
                dir,
                "it is not a directory (a symlink or another file)",
            ));
        }
        Err(e) => return Err(io_error(dir, e)),
    };
    let st = nix::sys::stat::fstat(&fd).map_err(|e| io_error(dir, e))?;
    let me = nix::unistd::geteuid().as_raw();
    if st.st_uid != me {
        return Err(unsafe_dir(
            dir,
            format!("it belongs to uid {}, not to uid {me}", st.st_uid),
        ));
    }
    let mode = st.st_mode & 0o7777;
    if mode & 0o022 != 0 {
        return Err(unsafe_dir(
            dir,
            format!("its mode {mode:04o} lets other users write to it; expected 0700"),
        ));
    }
    if mode != 0o700 {
        nix::sys::stat::fchmod(&fd, Mode::S_IRWXU).map_err(|e| io_error(dir, e))?;
    }
    Ok(fd)
}

/// Writes `contents` to a new file `name` in the private directory `dir` (see
/// [`private_dir`]) with permissions `mode`: whatever had that name before (a leftover of an
/// earlier guest, a symlink) is removed, never followed, and the file is created
/// `O_EXCL | O_NOFOLLOW`. Returns its path.
///
/// # Errors
/// As [`private_dir`]; [`InstanceError::RuntimeFile`] when the file cannot be written.
pub fn create_file(
    dir: &Path,
    name: &str,
    contents: &[u8],
    mode: u32,
) -> Result<PathBuf, InstanceError> {
    let path = dir.join(name);
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(io_error(
            &path,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"),
        ));
    }
    let dir_fd = private_dir(dir)?;
    match nix::unistd::unlinkat(&dir_fd, name, nix::unistd::UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(io_error(&path, e)),
    }
    let fd = nix::fcntl::openat(
        &dir_fd,
        name,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(mode & 0o777),
    )
    .map_err(|e| io_error(&path, e))?;
    // The umask narrowed the mode at creation; set exactly what was asked.
    nix::sys::stat::fchmod(&fd, Mode::from_bits_truncate(mode & 0o777))
        .map_err(|e| io_error(&path, e))?;
    std::fs::File::from(fd)
        .write_all(contents)
        .map_err(|e| io_error(&path, e))?;
    Ok(path)
}
