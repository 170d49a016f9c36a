//! What the kernel puts on or opens from the host: the umid directory and mconsole socket,
//! the memory file, sockets of network devices, disk and COW files.

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use super::{Checker, Severity};
use super::{MAX_SOCKET_PATH, MAX_UMID};
use crate::cmdline::Arg;

impl Checker<'_> {
    pub(super) fn umid(&mut self, index: usize, arg: &Arg, name: &str) {
        let at = Some((index, arg));
        // set_umid_arg(), arch/um/kernel/umid.c: once a umid is set, later ones only log
        // `umid already set` (and stay on the command line); a too-long one is refused
        // without a message and leaves the umid unset.
        if self.umid.is_some() {
            self.push(
                Severity::Warning,
                "umid-twice",
                at,
                "a umid is already set: the kernel logs `umid already set`, keeps the first \
                 and passes this word to init's environment"
                    .into(),
            );
            return;
        }
        if self.umid_seen {
            self.push(
                Severity::Note,
                "umid-after-refused",
                at,
                "an earlier umid was refused, so this one is used".into(),
            );
        }
        self.umid_seen = true;
        if name.len() > MAX_UMID {
            self.push(
                Severity::Warning,
                "umid-too-long",
                at,
                format!(
                    "umid is {} characters: the limit is {MAX_UMID}; the kernel silently uses a \
                     random 6-character umid instead",
                    name.len()
                ),
            );
        } else if name.is_empty() || name.contains('/') {
            self.push(
                Severity::Error,
                "umid-name",
                at,
                "a umid names a directory: it must be non-empty and contain no `/`".into(),
            );
        } else {
            self.umid = Some(name.to_owned());
        }
    }

    /// `<uml_dir><umid>/mconsole` must fit `sun_path` (mconsole_user.c, umid.c).
    pub(super) fn mconsole_path(&mut self) {
        let dir = match (&self.uml_dir, &self.env.default_uml_dir) {
            (Some(d), _) => d.clone(),
            (None, Some(d)) => d.display().to_string(),
            (None, None) => "~/.uml/".into(),
        };
        let dir = match (dir.strip_prefix('~'), self.env.var("HOME")) {
            (Some(rest), Some(home)) => format!("{home}{rest}"),
            _ => dir,
        };
        let sep = if dir.ends_with('/') { "" } else { "/" };
        let umid = self.umid.clone().unwrap_or_else(|| "XXXXXX".into());
        let path = format!("{dir}{sep}{umid}/mconsole");
        if path.len() > MAX_SOCKET_PATH {
            self.push(
                Severity::Error,
                "mconsole-path-too-long",
                None,
                format!(
                    "the mconsole socket `{path}` would be {} bytes: unix socket paths are \
                     limited to {MAX_SOCKET_PATH}; mconsole init fails and the instance cannot be \
                     controlled; use a shorter uml_dir or umid",
                    path.len()
                ),
            );
        }
    }

    /// Where the memory file goes (os-Linux/mem.c): TMPDIR, TMP, TEMP, /dev/shm if tmpfs,
    /// /tmp. The kernel maps it executable, so a noexec mount fails the boot.
    pub(super) fn memory_dir(&mut self) {
        if !self.env.filesystem {
            return;
        }
        let from_var = ["TMPDIR", "TMP", "TEMP"]
            .iter()
            .find_map(|k| self.env.var(k).map(|v| ((*k).to_owned(), PathBuf::from(v))));
        let (source, dir) = match from_var {
            Some((k, d)) => (format!("${k}"), d),
            None if is_tmpfs(Path::new("/dev/shm")) => ("/dev/shm".into(), "/dev/shm".into()),
            None => ("the default".into(), "/tmp".into()),
        };
        if !dir.is_dir() {
            self.push(
                Severity::Error,
                "memory-dir-missing",
                None,
                format!(
                    "the guest memory file goes to `{}` ({source}), which is not a directory",
                    dir.display()
                ),
            );
        } else if is_noexec(&dir) {
            self.push(
                Severity::Error,
                "memory-dir-noexec",
                None,
                format!(
                    "the guest memory file goes to `{}` ({source}), which is mounted noexec: the \
                     kernel exits 1 at start (`{} must be not mounted noexec`); point TMPDIR at \
                     an exec mount",
                    dir.display(),
                    dir.display()
                ),
            );
        }
    }

    pub(super) fn socket_path(
        &mut self,
        at: Option<(usize, &Arg)>,
        code: &'static str,
        what: &str,
        p: &Path,
    ) {
        let len = p.as_os_str().len();
        if len > MAX_SOCKET_PATH {
            self.push(
                Severity::Error,
                code,
                at,
                format!(
                    "the {what} path is {len} bytes: unix socket paths are limited to {MAX_SOCKET_PATH}"
                ),
            );
        }
    }

    pub(super) fn socket_exists(
        &mut self,
        at: Option<(usize, &Arg)>,
        code: &'static str,
        p: &Path,
        why: &str,
    ) {
        if !self.env.filesystem {
            return;
        }
        let ok = std::fs::metadata(p).is_ok_and(|m| m.file_type().is_socket());
        if !ok {
            self.push(
                Severity::Error,
                code,
                at,
                format!("`{}` is not a unix socket: {why}", p.display()),
            );
        }
    }

    /// What the kernel does with a COW file when it opens the disk (`ubd_kern.c`
    /// `open_ubd_file`, `cow_user.c`): autodetection by header, the backing file's size and
    /// mtime check, and the header rewrite when the command line names another backing file.
    pub(super) fn cow(&mut self, at: Option<(usize, &Arg)>, file: &Path, given: Option<&Path>) {
        if !self.env.filesystem {
            return;
        }
        let cow = match crate::cow::CowFile::open(file) {
            Ok(Some(cow)) => cow,
            Ok(None) => {
                if given.is_some() {
                    self.push(
                        Severity::Error,
                        "cow-no-header",
                        at,
                        format!(
                            "`{}` exists but is not a COW file: the kernel refuses the disk \
                             (`Failed to read COW header from COW file`); remove it to have a new \
                             COW made, or drop the backing file to use it as a plain image",
                            file.display()
                        ),
                    );
                }
                return;
            }
            Err(e) => {
                self.push(
                    Severity::Error,
                    "cow-bad-header",
                    at,
                    format!("`{}`: {e}", file.display()),
                );
                return;
            }
        };
        let header_backing = cow.backing_path().to_owned();
        if let Some(given) = given
            && given != header_backing
            && cow.check_backing(given).is_ok()
        {
            self.push(
                Severity::Warning,
                "cow-backing-switch",
                at,
                format!(
                    "the COW header of `{}` names `{}`, not `{}`: the kernel switches to `{}` \
                     and rewrites the header (a v1/v2 COW file is corrupted by that; `uml cow \
                     rebase` changes it safely)",
                    file.display(),
                    header_backing.display(),
                    given.display(),
                    given.display()
                ),
            );
            return;
        }
        if !header_backing.exists() {
            self.push(
                Severity::Error,
                "cow-missing-backing",
                at,
                format!(
                    "the backing file `{}` named in the COW header of `{}` does not exist",
                    header_backing.display(),
                    file.display()
                ),
            );
        } else if let Err(e) = cow.check_backing(&header_backing) {
            self.push(
                Severity::Error,
                "cow-backing-mismatch",
                at,
                format!(
                    "{e}: the kernel cannot open this disk (errno 22); the backing file changed \
                     after the COW was made"
                ),
            );
        }
    }

    pub(super) fn file_exists(
        &mut self,
        at: Option<(usize, &Arg)>,
        code: &'static str,
        p: &Path,
        what: &str,
    ) {
        if self.env.filesystem && !p.exists() {
            self.push(
                Severity::Error,
                code,
                at,
                format!("{what} `{}` does not exist", p.display()),
            );
        }
    }

    pub(super) fn dir_exists(&mut self, at: Option<(usize, &Arg)>, code: &'static str, p: &Path) {
        if self.env.filesystem && !p.as_os_str().is_empty() && !p.is_dir() {
            self.push(
                Severity::Error,
                code,
                at,
                format!("`{}` is not a directory", p.display()),
            );
        }
    }
}

/// Does the host have a BSD pty master (`/dev/ptyp0` … `/dev/ptyef`, `pty.c`'s getmaster)?
pub(super) fn host_has_legacy_ptys() -> bool {
    std::fs::read_dir("/dev").is_ok_and(|entries| {
        entries.filter_map(Result::ok).any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.len() == 5 && name.starts_with("pty")
        })
    })
}

fn is_tmpfs(p: &Path) -> bool {
    nix::sys::statfs::statfs(p).is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC)
}

fn is_noexec(p: &Path) -> bool {
    nix::sys::statvfs::statvfs(p)
        .is_ok_and(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_NOEXEC))
}

#[cfg(test)]
mod tests {
    use crate::check::{CheckEnv, check};
    use crate::cmdline::CommandLine;

    #[test]
    fn umid_and_uml_dir_make_the_mconsole_path() {
        let mut env = CheckEnv::offline();
        env.vars
            .insert("HOME".into(), format!("/home/{}", "h".repeat(90)));
        let c = CommandLine::parse(&["umid=abcdefgh", "con=null", "root=/dev/root"]);
        assert_eq!(check(&c, &env).with_code("ambiguous").count(), 0);
        let report = check(&c, &env);
        let f = report
            .with_code("mconsole-path-too-long")
            .next()
            .expect("too long");
        assert!(
            f.message.contains("/.uml/abcdefgh/mconsole"),
            "{}",
            f.message
        );
        let short = CommandLine::parse(&["umid=abcdefgh", "uml_dir=/tmp/u", "con=null"]);
        assert_eq!(
            check(&short, &env)
                .with_code("mconsole-path-too-long")
                .count(),
            0
        );
    }
}
