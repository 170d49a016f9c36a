//! The `-o` option list of `umlfs`, as given on the command line, by `mount -t fuse.umlfs`
//! (through mount.fuse3) or from an `/etc/fstab` line.
//!
//! Guarantees: the mount is always read-only, `nosuid` and `nodev`, whatever the list says
//! (`rw`, `dev` and `suid` are accepted because mount and mount.fuse3 pass them by default,
//! and then overridden). Options meant for mount(8) or other programs (`nofail`, `_netdev`,
//! `user`, `x-*`, ...) are ignored; anything else that is not ours is refused with its name.

use std::path::PathBuf;

/// umlfs's own `-o` options, each spelled as it is written (`uid=N`: a value follows) with
/// what it does. From this one table come the list an unknown option's error gives, the MOUNT
/// OPTIONS of umlfs(1) and the completion of `-o`; a test holds the parser to it.
pub const OPTIONS: &[(&str, &str)] = &[
    (
        "ro",
        "Read-only, the default: the mount is always read-only.",
    ),
    (
        "rw",
        "Accepted because mount(8) and mount.fuse3 pass it; the mount is read-only all the same.",
    ),
    (
        "allow_other",
        "Other users see the files too, with the guest's modes and ACLs checked by the kernel.",
    ),
    ("allow_root", "Root sees the files too."),
    (
        "default_permissions",
        "The kernel checks the guest's modes and ACLs for the mounting user as well.",
    ),
    ("uid=N", "Every file is shown as owned by user N."),
    ("gid=N", "Every file is shown as owned by group N."),
    (
        "umask=OCTAL",
        "These permission bits are cleared from every file shown.",
    ),
    (
        "uml_dir=DIR",
        "The running guests' directory, where UMID is looked for, instead of ~/.uml.",
    ),
    (
        "snapshot",
        "One consistent view, frozen: the guest is synced and paused while it is captured, and the pause is reported.",
    ),
    ("noexec", "Nothing on the mount can be executed."),
    (
        "fsname=NAME",
        "The source column of /proc/mounts and df (the source as given, by default).",
    ),
    (
        "noxattr",
        "No extended attributes and no ACLs: see EXTENDED ATTRIBUTES.",
    ),
    ("anycpu", "Requests are answered from any CPU: see SPEED."),
    (
        "nouring",
        "Requests go through /dev/fuse, never FUSE over io_uring: see SPEED.",
    ),
];

/// The options of [`OPTIONS`] as a list for a message: `ro, rw, …, uid=N, …`.
fn accepted() -> String {
    OPTIONS
        .iter()
        .map(|(o, _)| *o)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why an option list was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OptionError {
    #[error(
        "unknown mount option \"{0}\" (accepted: {list}, and mount's own options such as nofail, noauto, user, _netdev, x-*)",
        list = accepted()
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

    /// Every option of the table parses (with a value where it takes one, and refuses to go
    /// without), and the error of an unknown one lists them all.
    #[test]
    fn the_table_is_what_the_parser_accepts() {
        for (spelled, help) in OPTIONS {
            assert!(help.ends_with('.'), "{spelled}: {help}");
            let mut o = MountOptions::default();
            match spelled.split_once('=') {
                Some((name, _)) => {
                    let sample = if name == "umask" { "022" } else { "7" };
                    o.parse_into(&format!("{name}={sample}"))
                        .unwrap_or_else(|e| panic!("{spelled}: {e}"));
                    assert_eq!(
                        o.parse_into(name),
                        Err(OptionError::MissingValue(name.into())),
                        "{spelled}"
                    );
                }
                None => o
                    .parse_into(spelled)
                    .unwrap_or_else(|e| panic!("{spelled}: {e}")),
            }
            if *spelled != "ro" {
                assert_ne!(o, MountOptions::default(), "{spelled} changed nothing");
            }
        }
        let e = MountOptions::default().parse_into("bogus").unwrap_err();
        for (spelled, _) in OPTIONS {
            assert!(e.to_string().contains(spelled), "{spelled}: {e}");
        }
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
