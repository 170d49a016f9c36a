//! Who may do what through umld: a caller must not be able to do through the service anything
//! it could not do itself.
//!
//! Every method that changes a guest or reads inside it starts with [`Access::check`], which
//! asks the bus daemon for the caller's credentials (`GetConnectionCredentials`: the kernel's
//! word, not the caller's):
//! * the service's own user and root are always allowed (they could do it all themselves);
//! * on a session bus (or a bus given by address) nobody else is: `AccessDenied`;
//! * on the system bus anyone else must be authorised by polkit, per call, for the method's
//!   action ([`Action::Launch`] or [`Action::Manage`]), through
//!   `org.freedesktop.PolicyKit1.Authority.CheckAuthorization` with the caller's unique bus
//!   name as the subject (polkit reads that connection's pid, start time and uid from the bus).
//!
//! A guest that the system service launches for a caller that is neither runs as that
//! caller, in its own uml_dir ([`crate::users`]): its kernel opens everything on the host
//! (disks, and the host's `/` that the built-in guest sees through hostfs) with the
//! caller's rights. That caller may manage its own guests without polkit
//! ([`Access::check_machine`]). Besides, whatever such a caller names on the host is checked
//! against its own access first, as a process running with its uid and groups would see it
//! ([`check_paths`]): the disks and writable directories of `Launch` (and the backing file a
//! COW disk names), and the files of `Config` on root's guests, which run as root. Such a
//! caller cannot choose the kernel, the raw kernel command line or host networking.
//! Properties, `ListMachines`, `GetMachine`, `Version` and `QueryConfig` stay readable by
//! anyone the bus lets call the service.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use zbus::OwnedVariant;
use zbus::Variant as Value;
use zbus::message::{Flags, Header};

use crate::error::Error;

/// The polkit action that `Launch` needs.
pub const LAUNCH_ACTION: &str = "org.umlkit.uml1.launch";
/// The polkit action that every other state-changing method needs.
pub const MANAGE_ACTION: &str = "org.umlkit.uml1.manage";

/// How long a polkit check may take: it may ask the caller for a password through its agent.
const POLKIT_TIMEOUT: Duration = Duration::from_secs(120);

/// How long the check of a caller's paths may take.
const PATHS_TIMEOUT: Duration = Duration::from_secs(10);

/// What a method does, and so who may call it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Reads inside a guest (Proc, Stack): the owner's on a session bus, [`MANAGE_ACTION`] on
    /// the system bus.
    Inspect,
    /// Starts a guest: [`LAUNCH_ACTION`].
    Launch,
    /// Changes a guest (power, devices, consoles, kernel log): [`MANAGE_ACTION`].
    Manage,
}

impl Action {
    fn polkit_id(self) -> &'static str {
        match self {
            Action::Launch => LAUNCH_ACTION,
            Action::Inspect | Action::Manage => MANAGE_ACTION,
        }
    }
}

/// How callers other than the service's user are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Policy {
    /// A session bus: only the service's user (and root).
    OwnerOnly,
    /// The system bus: whoever polkit authorises.
    Polkit,
}

/// A caller that passed [`Access::check`].
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    /// The service's own user or root: nothing it names needs checking.
    pub trusted: bool,
}

/// The access check of one service.
#[derive(Debug)]
pub(crate) struct Access {
    policy: Policy,
    owner: u32,
    conn: zbus::Connection,
    /// The bus daemon, made once (without a property cache: only its methods are used).
    bus: tokio::sync::OnceCell<zbus::fdo::DBusProxy<'static>>,
}

impl Access {
    pub(crate) fn new(policy: Policy, conn: zbus::Connection) -> Access {
        Access {
            policy,
            owner: nix::unistd::getuid().as_raw(),
            conn,
            bus: tokio::sync::OnceCell::new(),
        }
    }

    /// Who sent the call `header` belongs to, and whether it may do `action`.
    ///
    /// # Errors
    /// [`Error::AccessDenied`] naming the caller's uid and what would allow it.
    pub(crate) async fn check(&self, header: &Header<'_>, action: Action) -> Result<Caller, Error> {
        self.check_machine(header, action, None).await
    }

    /// [`check`](Access::check) for a call on a machine whose kernel runs as `owner` (a guest
    /// launched for a caller): that user is allowed as well, without polkit, since it could
    /// do all of it itself (the kernel and its mconsole socket are its own).
    ///
    /// # Errors
    /// As [`check`](Access::check).
    pub(crate) async fn check_machine(
        &self,
        header: &Header<'_>,
        action: Action,
        owner: Option<u32>,
    ) -> Result<Caller, Error> {
        let sender = header
            .sender()
            .ok_or_else(|| Error::AccessDenied("the call has no sender".into()))?
            .to_owned();
        let dbus = self
            .bus
            .get_or_try_init(|| async {
                zbus::fdo::DBusProxy::builder(&self.conn)
                    .cache_properties(zbus::proxy::CacheProperties::No)
                    .build()
                    .await
            })
            .await?;
        let creds = dbus
            .get_connection_credentials(sender.clone().into())
            .await
            .map_err(|e| Error::AccessDenied(format!("cannot learn who {sender} is: {e}")))?;
        let uid = creds.unix_user_id().ok_or_else(|| {
            Error::AccessDenied(format!("the bus does not say which user {sender} is"))
        })?;
        let trusted = uid == self.owner || uid == 0;
        let (gid, groups) = groups_of(uid, creds.unix_group_ids());
        let caller = Caller {
            uid,
            gid,
            groups,
            trusted,
        };
        if trusted || owner == Some(uid) {
            return Ok(caller);
        }
        match self.policy {
            Policy::OwnerOnly => Err(Error::AccessDenied(format!(
                "uid {uid} may not use this umld: it serves uid {} only (run your own umld, on your session bus)",
                self.owner
            ))),
            Policy::Polkit => {
                let interactive = header
                    .primary()
                    .flags()
                    .contains(Flags::ALLOW_INTERACTIVE_AUTH);
                self.authorize(&sender, uid, action, interactive).await?;
                Ok(caller)
            }
        }
    }

    async fn authorize(
        &self,
        sender: &zbus::names::UniqueName<'_>,
        uid: u32,
        action: Action,
        interactive: bool,
    ) -> Result<(), Error> {
        let id = action.polkit_id();
        let subject: (&str, HashMap<&str, Value<'_>>) = (
            "system-bus-name",
            HashMap::from([("name", Value::from(sender.as_str()))]),
        );
        let details: HashMap<&str, &str> = HashMap::new();
        // CheckAuthorizationFlags: AllowUserInteraction = 1, only when the caller allows it.
        let flags = u32::from(interactive);
        let body = (subject, id, details, flags, "");
        let call = self.conn.call_method(
            Some("org.freedesktop.PolicyKit1"),
            "/org/freedesktop/PolicyKit1/Authority",
            Some("org.freedesktop.PolicyKit1.Authority"),
            "CheckAuthorization",
            &body,
        );
        let reply = tokio::time::timeout(POLKIT_TIMEOUT, call)
            .await
            .map_err(|_| {
                Error::AccessDenied(format!(
                    "uid {uid} needs authorization for {id}, and polkit did not answer within {POLKIT_TIMEOUT:?}"
                ))
            })?
            .map_err(|e| {
                Error::AccessDenied(format!(
                    "uid {uid} needs authorization for {id}, and polkit could not be asked: {e}"
                ))
            })?;
        let (authorized, challenge, _details): (bool, bool, HashMap<String, String>) =
            reply.body().deserialize().map_err(|e| {
                Error::AccessDenied(format!("polkit's answer for {id} is malformed: {e}"))
            })?;
        if authorized {
            tracing::info!(uid, action = id, "polkit authorised a caller");
            return Ok(());
        }
        Err(Error::AccessDenied(if challenge {
            format!(
                "uid {uid} is not authorised for {id}: polkit asks for authentication (call with interactive authorization and a polkit agent running)"
            )
        } else {
            format!("uid {uid} is not authorised for {id} (polkit said no)")
        }))
    }
}

/// The primary group and supplementary groups of `uid`: the bus's list when it gives one,
/// else the user database's.
fn groups_of(uid: u32, from_bus: Option<&Vec<u32>>) -> (u32, Vec<u32>) {
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten();
    // A uid without an entry gets the overflow gid's rights only: no group at all.
    let gid = user.as_ref().map_or(65534, |u| u.gid.as_raw());
    let groups = match (from_bus, &user) {
        (Some(g), _) => g.clone(),
        (None, Some(u)) => std::ffi::CString::new(u.name.as_bytes())
            .ok()
            .and_then(|name| nix::unistd::getgrouplist(&name, u.gid).ok())
            .map(|g| g.into_iter().map(nix::unistd::Gid::as_raw).collect())
            .unwrap_or_else(|| vec![gid]),
        (None, None) => vec![gid],
    };
    (gid, groups)
}

/// What a caller needs on a host path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    Read,
    ReadWrite,
    /// A directory the caller can list, enter and write in.
    WritableDir,
    /// A directory on the way to a file that the caller cannot write in: it cannot swap the
    /// file for another (a symlink to /etc/shadow) between the check and the kernel's open.
    Unchangeable,
}

impl Need {
    fn test_flags(self) -> &'static str {
        match self {
            Need::Read => "r",
            Need::ReadWrite => "rw",
            Need::WritableDir => "drwx",
            Need::Unchangeable => "dW",
        }
    }

    fn says(self) -> &'static str {
        match self {
            Need::Read => "read",
            Need::ReadWrite => "read and write",
            Need::WritableDir => "enter and write in",
            Need::Unchangeable => "leave unchanged (it may write in)",
        }
    }
}

/// Checks that `caller` itself could use every path as needed, by asking a shell that runs
/// with the caller's uid, gid and groups (`test -r`, `-w`, `-x`, `-d`: access(2) with its
/// real ids, every directory on the way searched with its rights). Paths are made canonical
/// first; the canonical ones are returned, for the kernel to open instead of the given
/// ones (no symlink the caller controls is followed later). Trusted callers pass unchecked.
///
/// # Errors
/// [`Error::AccessDenied`] naming the first path the caller could not use.
pub(crate) async fn check_paths(
    caller: &Caller,
    paths: &[(PathBuf, Need)],
) -> Result<Vec<PathBuf>, Error> {
    check_paths_for(caller, paths, Opener::Root).await
}

/// Who opens the checked files: a kernel running as root (root's guests), or one running as
/// the caller (a guest launched for it), for which a file swapped after the check is no
/// danger: the kernel opens it with the caller's own rights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Opener {
    Root,
    Caller,
}

/// [`check_paths`], for files that `opener` opens.
pub(crate) async fn check_paths_for(
    caller: &Caller,
    paths: &[(PathBuf, Need)],
    opener: Opener,
) -> Result<Vec<PathBuf>, Error> {
    if caller.trusted || paths.is_empty() {
        return Ok(paths.iter().map(|(p, _)| p.clone()).collect());
    }
    let denied = |p: &Path, need: Need| {
        Error::AccessDenied(format!(
            "uid {} cannot {} {} itself, so umld will not do it for it",
            caller.uid,
            need.says(),
            p.display()
        ))
    };
    // As the caller first: canonicalising as root would tell whether a path it cannot see
    // exists.
    let mut command = caller_shell(caller);
    command.arg(CHECK_SCRIPT).arg("umld-access");
    for (p, need) in paths {
        command.arg(need.test_flags()).arg(p);
    }
    let out = tokio::time::timeout(PATHS_TIMEOUT, command.output())
        .await
        .map_err(|_| Error::Failed("the check of the caller's paths did not finish".into()))?
        .map_err(|e| Error::Failed(format!("cannot check the caller's paths: {e}")))?;
    if !out.status.success() {
        let index: usize = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        let (p, need) = &paths[index.min(paths.len() - 1)];
        return Err(denied(p, *need));
    }
    let mut canonical = Vec::with_capacity(paths.len());
    for (p, need) in paths {
        let c = std::fs::canonicalize(p).map_err(|_| denied(p, *need))?;
        if matches!(need, Need::Read | Need::ReadWrite) {
            use std::os::unix::fs::FileTypeExt;
            let kind = std::fs::metadata(&c)
                .map_err(|_| denied(p, *need))?
                .file_type();
            if !kind.is_file() && !kind.is_block_device() {
                return Err(Error::InvalidArgument(format!(
                    "{} is neither a regular file nor a block device",
                    p.display()
                )));
            }
        }
        // The kernel's disk syntax splits at both (file,backing and file:backing).
        for name in [p, &c] {
            if name
                .as_os_str()
                .as_encoded_bytes()
                .iter()
                .any(|b| matches!(b, b',' | b':'))
            {
                return Err(Error::AccessDenied(format!(
                    "uid {}: {} has a ',' or ':', which the kernel would read as a second file; rename it",
                    caller.uid,
                    name.display()
                )));
            }
        }
        canonical.push(c);
    }
    // A file reaches the kernel by name: no directory on the way may be one the caller can
    // change, or it could swap the file after this check (in a sticky directory such as
    // /tmp, only an entry of its own). A writable directory given as such (rw) is the guest's
    // to change anyway.
    let mut ways = Vec::new();
    for (c, (_, need)) in canonical.iter().zip(paths) {
        if opener == Opener::Root && matches!(need, Need::Read | Need::ReadWrite) {
            ways.extend(changeable_candidates(c, caller.uid));
        }
    }
    if !ways.is_empty() {
        let checked = Caller {
            trusted: false,
            ..caller.clone()
        };
        Box::pin(check_unchangeable(&checked, &ways)).await?;
    }
    // And the canonical names again, as the caller: the same files, seen through its eyes.
    if canonical.iter().zip(paths).any(|(c, (p, _))| c != p) {
        let again: Vec<(PathBuf, Need)> = canonical
            .iter()
            .zip(paths)
            .map(|(c, (_, need))| (c.clone(), *need))
            .collect();
        let checked = Caller {
            trusted: false,
            ..caller.clone()
        };
        Box::pin(check_paths_for(&checked, &again, opener)).await?;
    }
    Ok(canonical)
}

/// The directories on the way to `file` (canonical) that its caller must not be able to
/// write in: every one, except a sticky directory whose entry on the way is not the
/// caller's (there it cannot remove or rename that entry).
fn changeable_candidates(file: &Path, uid: u32) -> Vec<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut entry = file;
    while let Some(dir) = entry.parent() {
        let sticky_guard = std::fs::symlink_metadata(dir).is_ok_and(|m| m.mode() & 0o1000 != 0)
            && std::fs::symlink_metadata(entry).is_ok_and(|m| m.uid() != uid);
        if !sticky_guard {
            out.push(dir.to_owned());
        }
        entry = dir;
    }
    out
}

async fn check_unchangeable(caller: &Caller, dirs: &[PathBuf]) -> Result<(), Error> {
    let mut command = caller_shell(caller);
    command.arg(CHECK_SCRIPT).arg("umld-access");
    for d in dirs {
        command.arg(Need::Unchangeable.test_flags()).arg(d);
    }
    let out = tokio::time::timeout(PATHS_TIMEOUT, command.output())
        .await
        .map_err(|_| Error::Failed("the check of the caller's paths did not finish".into()))?
        .map_err(|e| Error::Failed(format!("cannot check the caller's paths: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    let index: usize = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    let dir = &dirs[index.min(dirs.len() - 1)];
    Err(Error::AccessDenied(format!(
        "uid {} may write in {}, so it could swap a file there for another after this check; umld opens files as root, so a file for it must be in directories the caller cannot change",
        caller.uid,
        dir.display()
    )))
}

/// `sh -c CHECK_SCRIPT umld-access FLAGS PATH …`: prints the index of the first pair that
/// fails and exits 1.
const CHECK_SCRIPT: &str = r#"i=0
while [ $# -ge 2 ]; do
  f=$1 p=$2; shift 2
  case $f in *d*) [ -d "$p" ] || { echo $i; exit 1; };; esac
  case $f in *r*) [ -r "$p" ] || { echo $i; exit 1; };; esac
  case $f in *w*) [ -w "$p" ] || { echo $i; exit 1; };; esac
  case $f in *x*) [ -x "$p" ] || { echo $i; exit 1; };; esac
  case $f in *W*) [ -w "$p" ] && { echo $i; exit 1; };; esac
  [ -e "$p" ] || { echo $i; exit 1; }
  i=$((i+1))
done
"#;

fn caller_shell(caller: &Caller) -> tokio::process::Command {
    let mut command = tokio::process::Command::new("/bin/sh");
    command
        .arg("-c")
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let (uid, gid) = (caller.uid, caller.gid);
    let groups: Vec<libc::gid_t> = caller.groups.clone();
    // SAFETY: between fork and exec only setgroups(2), setresgid(2) and setresuid(2) run (as
    // std's own Command::uid does), on memory allocated before the fork that the child only
    // reads. Groups go first and the uid last: each needs the privilege the next one drops.
    unsafe {
        command.pre_exec(move || {
            if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                || libc::setresgid(gid, gid, gid) != 0
                || libc::setresuid(uid, uid, uid) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command
}

/// The host paths of `Launch`'s options, checked for a caller that is not trusted; the
/// options come back with the canonical paths in place of the given ones.
///
/// # Errors
/// [`Error::AccessDenied`] for an option such a caller may not give (`kernel`,
/// `kernel_args`) or a path it could not use itself.
pub(crate) async fn vet_launch(
    caller: &Caller,
    mut options: HashMap<String, OwnedVariant>,
) -> Result<HashMap<String, OwnedVariant>, Error> {
    if caller.trusted {
        return Ok(options);
    }
    for (key, why) in [
        (
            "kernel",
            "the kernel runs as umld's user; drop it to run the service's kernel",
        ),
        (
            "kernel_args",
            "the kernel runs as umld's user; use the typed options",
        ),
        (
            "net",
            "it would attach host network devices, sockets or switches as umld's user",
        ),
    ] {
        if options.contains_key(key) {
            return Err(Error::AccessDenied(format!(
                "uid {}: only root or umld's own user may give the {key:?} option ({why})",
                caller.uid
            )));
        }
    }
    let list = |key: &str, options: &HashMap<String, OwnedVariant>| -> Vec<String> {
        options
            .get(key)
            .and_then(|v| Vec::<String>::try_from(v.try_clone().ok()?).ok())
            .unwrap_or_default()
    };
    let disks = list("disks", &options);
    let rw = list("rw", &options);
    // Each disk spec is FILE, FILE:ro, COW:BASE or COW:BASE:ro (uml::launch::disk_arg).
    let mut paths = Vec::new();
    let mut layout = Vec::new();
    for spec in &disks {
        let mut fields: Vec<&str> = spec.split(':').collect();
        let suffix = match fields.last() {
            Some(&"ro") | Some(&"rw") => fields.pop(),
            _ => None,
        };
        let writable = suffix != Some("ro");
        let first = paths.len();
        for (i, f) in fields.iter().enumerate() {
            let need = if i == 0 && writable {
                Need::ReadWrite
            } else {
                Need::Read
            };
            paths.push((PathBuf::from(f), need));
        }
        layout.push((first, fields.len(), suffix));
    }
    let rw_first = paths.len();
    for d in &rw {
        paths.push((PathBuf::from(d), Need::WritableDir));
    }
    if let Some((p, _)) = paths.iter().find(|(p, _)| !p.is_absolute()) {
        return Err(Error::InvalidArgument(format!(
            "{:?} is not an absolute path; give disks and rw directories by absolute path",
            p.display()
        )));
    }
    // The kernel of a caller's guest runs as the caller (crate::users).
    let canonical = check_paths_for(caller, &paths, Opener::Caller).await?;
    // A COW file's header names its backing file, which the kernel opens too.
    let mut backing = Vec::new();
    for (first, count, _) in &layout {
        if *count == 1
            && let Ok(Some(cow)) = uml::cow::CowFile::open(&canonical[*first])
        {
            backing.push((cow.backing_path().to_owned(), Need::Read));
        }
    }
    check_paths_for(caller, &backing, Opener::Caller).await?;
    let disks: Vec<String> = layout
        .iter()
        .map(|(first, count, suffix)| {
            let mut fields: Vec<String> = canonical[*first..first + count]
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            if let Some(s) = suffix {
                fields.push((*s).to_owned());
            }
            fields.join(":")
        })
        .collect();
    let rw: Vec<String> = canonical[rw_first..]
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    if !disks.is_empty() {
        options.insert("disks".into(), owned(disks)?);
    }
    if !rw.is_empty() {
        options.insert("rw".into(), owned(rw)?);
    }
    Ok(options)
}

fn owned(list: Vec<String>) -> Result<OwnedVariant, Error> {
    OwnedVariant::try_from(Value::from(list)).map_err(|e| Error::Failed(e.to_string()))
}

/// The spec of a `Config(device, spec)` call, checked for a caller that is not trusted: a
/// disk's files (`FILE` or `COW,BASE`, and the backing file a COW file names) against its
/// own access, in directories it cannot change; console lines only on channels that name
/// nothing on the host (null, pts, pty); nothing else. Returns
/// the spec to send: a disk's files by their canonical paths.
///
/// # Errors
/// [`Error::AccessDenied`] naming what the caller may not attach.
pub(crate) async fn vet_config(caller: &Caller, device: &str, spec: &str) -> Result<String, Error> {
    if caller.trusted {
        return Ok(spec.to_owned());
    }
    // Only a bare name (ubd1r, con1): anything else would reach the guest's command line.
    let digits = device.trim_start_matches(|c: char| c.is_ascii_lowercase());
    let flags = digits.trim_start_matches(|c: char| c.is_ascii_digit());
    if digits.len() == device.len()
        || flags.len() == digits.len()
        || !flags.bytes().all(|b| b.is_ascii_lowercase())
    {
        return Err(Error::InvalidArgument(format!(
            "{device:?} is not a device name; pass one such as ubd1, ubd1r or con1"
        )));
    }
    if let Some((_, read_only)) = crate::machine::ubd_unit(&format!("{device}=")) {
        let mut paths = Vec::new();
        for (i, f) in spec.split(',').enumerate() {
            let need = if i == 0 && !read_only {
                Need::ReadWrite
            } else {
                Need::Read
            };
            if !Path::new(f).is_absolute() {
                return Err(Error::AccessDenied(format!(
                    "uid {}: {f:?} is not an absolute path; give disks by absolute path",
                    caller.uid
                )));
            }
            paths.push((PathBuf::from(f), need));
        }
        let canonical = check_paths(caller, &paths).await?;
        if let [cow] = canonical.as_slice()
            && let Ok(Some(cow)) = uml::cow::CowFile::open(cow)
        {
            check_paths(caller, &[(cow.backing_path().to_owned(), Need::Read)]).await?;
        }
        let files: Vec<String> = canonical.iter().map(|p| p.display().to_string()).collect();
        return Ok(files.join(","));
    }
    let line = crate::machine::is_line(device);
    // Not xterm: it starts a program on the host, as umld's user.
    if line && matches!(spec, "null" | "pts" | "pty") {
        return Ok(spec.to_owned());
    }
    Err(Error::AccessDenied(format!(
        "uid {}: Config({device:?}, {spec:?}) would act on the host as umld's user; a caller other than root or umld's user may attach disks it can open itself (ubdN) and put console lines on null, pts or pty",
        caller.uid
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The overflow user: no file of its own, no group.
    fn nobody() -> Caller {
        Caller {
            uid: 65534,
            gid: 65534,
            groups: vec![65534],
            trusted: false,
        }
    }

    #[test]
    fn in_a_sticky_directory_only_the_callers_own_entry_counts_as_changeable() {
        let theirs = tempfile::tempdir_in("/tmp").unwrap();
        let file = theirs.path().join("disk.img");
        std::fs::write(&file, b"").unwrap();
        // /tmp is sticky and the entry is root's: nobody cannot swap it; its own would be.
        let ways = changeable_candidates(&file, 65534);
        assert!(ways.contains(&theirs.path().to_owned()), "{ways:?}");
        assert!(!ways.contains(&PathBuf::from("/tmp")), "{ways:?}");
        assert!(ways.contains(&PathBuf::from("/")), "{ways:?}");
        let ways = changeable_candidates(&file, 0);
        assert!(ways.contains(&PathBuf::from("/tmp")), "{ways:?}");
    }

    #[tokio::test]
    async fn a_foreign_caller_names_only_bare_devices_and_files_it_could_open() {
        let err = vet_config(&nobody(), "ubd1=/etc/shadow,", "/x")
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
        let err = vet_config(&nobody(), "ubd1", "/etc/shadow")
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::AccessDenied(m) if m.contains("/etc/shadow")),
            "{err:?}"
        );
        let err = vet_config(&nobody(), "con1", "xterm").await.unwrap_err();
        assert!(matches!(err, Error::AccessDenied(_)), "{err:?}");
        assert_eq!(vet_config(&nobody(), "con1", "pts").await.unwrap(), "pts");
        let trusted = Caller {
            trusted: true,
            ..nobody()
        };
        assert_eq!(
            vet_config(&trusted, "ubd1", "/etc/shadow").await.unwrap(),
            "/etc/shadow"
        );
    }
}
