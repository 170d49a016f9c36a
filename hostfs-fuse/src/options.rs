//! The `-o` option list of `umlfs`, as given on the command line, by `mount -t fuse.umlfs`
//! (through mount.fuse3) or from an `/etc/fstab` line.
//!
//! Guarantees: the mount is always read-only, `nosuid` and `nodev`, whatever the list says
//! (`rw`, `dev` and `suid` are accepted because mount and mount.fuse3 pass them by default,
//! and then overridden). Options meant for mount(8) or other programs (`nofail`, `_netdev`,
//! `user`, `x-*`, ...) are ignored; anything else that is not ours is refused with its name.

use std::path::PathBuf;

/// Why an option list was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OptionError {
    #[error(
        "unknown mount option \"{0}\" (accepted: ro, rw, allow_other, allow_root, default_permissions, uid=N, gid=N, umask=OCTAL, uml_dir=DIR, snapshot, noxattr, nouring, anycpu, noexec, fsname=NAME, and mount's own options such as nofail, noauto, user, _netdev, x-*)"
    )]
    Unknown(String),
    #[error("mount option \"{name}\" has the bad value \"{value}\": {accepted}")]
    BadValue {
        name: String,
        value: String,
        accepted: &'static str,
    },
    #[error("mount option \"{0}\" needs a value (write {0}=VALUE)")]
    MissingValue(String),
}

/// The options that change what umlfs does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountOptions {
    /// Other users may see the files (with the guest's permission bits enforced).
    pub allow_other: bool,
    /// Root may see the files too.
    pub allow_root: bool,
    /// The kernel checks the guest's permission bits.
    pub default_permissions: bool,
    /// Present every file as owned by this uid.
    pub uid: Option<u32>,
    /// Present every file as owned by this gid.
    pub gid: Option<u32>,
    /// Clear these permission bits of every file.
    pub umask: Option<u16>,
    /// The guest's uml_dir, instead of `$HOME/.uml`.
    pub uml_dir: Option<PathBuf>,
    /// Freeze one consistent view (pause the guest while it is captured).
    pub snapshot: bool,
    /// No extended attributes and no ACLs: one FUSE round trip fewer per file for `ls -l`.
    pub noxattr: bool,
    /// Requests through `/dev/fuse` only, never the kernel's per-CPU io_uring queues.
    pub nouring: bool,
    /// Answer /dev/fuse requests from any CPU, never from the caller's.
    pub anycpu: bool,
    /// `rw` was asked for (it is ignored: the mount is read-only).
    pub rw_requested: bool,
    pub noexec: bool,
    /// The source column of /proc/mounts.
    pub fsname: Option<String>,
}

/// Options that belong to mount(8), mount.fuse3 or other programs reading fstab: accepted and
/// ignored. `dev`/`suid` are overridden (nosuid,nodev are forced), `ro` is the default.
const IGNORED: &[&str] = &[
    "ro",
    "defaults",
    "dev",
    "nodev",
    "suid",
    "nosuid",
    "exec",
    "async",
    "sync",
    "dirsync",
    "auto",
    "noauto",
    "nofail",
    "_netdev",
    "user",
    "nouser",
    "users",
    "owner",
    "group",
    "atime",
    "noatime",
    "relatime",
    "norelatime",
    "strictatime",
    "nostrictatime",
    "diratime",
    "nodiratime",
    "lazytime",
    "nolazytime",
    "silent",
    "loud",
    "nosymfollow",
];

impl MountOptions {
    /// Add the options of one comma-separated list (`-o` may be given several times).
    ///
    /// # Errors
    /// [`OptionError`] naming the first option that is neither ours nor mount's.
    pub fn parse_into<'a>(&mut self, list: &'a str) -> Result<(), OptionError> {
        for opt in list.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            let (name, value) = match opt.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (opt, None),
            };
            let need = |v: Option<&'a str>| v.ok_or_else(|| OptionError::MissingValue(name.into()));
            match name {
                "rw" => self.rw_requested = true,
                "allow_other" => self.allow_other = true,
                "allow_root" => self.allow_root = true,
                "default_permissions" => self.default_permissions = true,
                "snapshot" => self.snapshot = true,
                "noxattr" => self.noxattr = true,
                "nouring" => self.nouring = true,
                "anycpu" => self.anycpu = true,
                "noexec" => self.noexec = true,
                "uid" => self.uid = Some(number(name, need(value)?)?),
                "gid" => self.gid = Some(number(name, need(value)?)?),
                "umask" => {
                    let v = need(value)?;
                    let m = u16::from_str_radix(v, 8)
                        .ok()
                        .filter(|m| *m <= 0o7777)
                        .ok_or_else(|| OptionError::BadValue {
                            name: name.into(),
                            value: v.into(),
                            accepted: "an octal mask from 0 to 7777",
                        })?;
                    self.umask = Some(m);
                }
                "uml_dir" => {
                    let v = need(value)?;
                    if v.is_empty() {
                        return Err(OptionError::BadValue {
                            name: name.into(),
                            value: v.into(),
                            accepted: "a directory path",
                        });
                    }
                    self.uml_dir = Some(PathBuf::from(v));
                }
                "fsname" => self.fsname = Some(need(value)?.to_owned()),
                // mount.fuse3 and fstab pass these through; they mean nothing to us.
                "subtype" | "comment" | "context" | "fscontext" | "defcontext" | "rootcontext" => {}
                n if n.starts_with("x-") => {}
                n if value.is_none() && IGNORED.contains(&n) => {}
                _ => return Err(OptionError::Unknown(opt.to_owned())),
            }
        }
        Ok(())
    }
}

fn number(name: &str, v: &str) -> Result<u32, OptionError> {
    v.parse().map_err(|_| OptionError::BadValue {
        name: name.into(),
        value: v.into(),
        accepted: "a decimal number",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_helper_defaults_are_accepted_and_fstab_extras_ignored() {
        let mut o = MountOptions::default();
        o.parse_into("rw,dev,suid").unwrap();
        o.parse_into("ro,noauto,nofail,_netdev,user,x-systemd.automount,allow_other")
            .unwrap();
        assert!(o.rw_requested && o.allow_other);
        assert!(!o.snapshot);
    }

    #[test]
    fn ownership_and_mask_options_are_parsed() {
        let mut o = MountOptions::default();
        o.parse_into("uid=1000,gid=100,umask=027,uml_dir=/x/y,snapshot")
            .unwrap();
        assert_eq!(
            (o.uid, o.gid, o.umask, o.uml_dir.as_deref()),
            (
                Some(1000),
                Some(100),
                Some(0o27),
                Some(std::path::Path::new("/x/y"))
            )
        );
        assert!(o.snapshot);
    }

    #[test]
    fn unknown_and_malformed_options_are_refused_by_name() {
        let mut o = MountOptions::default();
        let e = o.parse_into("ro,writeback_cache").unwrap_err();
        assert!(e.to_string().contains("writeback_cache"), "{e}");
        assert!(matches!(
            o.parse_into("uid=me"),
            Err(OptionError::BadValue { .. })
        ));
        assert!(matches!(
            o.parse_into("umask=99"),
            Err(OptionError::BadValue { .. })
        ));
        assert!(matches!(
            o.parse_into("uid"),
            Err(OptionError::MissingValue(_))
        ));
    }
}
