//! A guest that boots a disk image as `/` with its own init (`uml run --root`), and what the
//! host sees of it: the disk's lock holder, the kernel's ptys, a login prompt.

use super::*;

/// The console line that carries a [`DiskGuest`]'s kernel log (`console=tty15`): the highest
/// one, which neither systemd (getty on tty1) nor sysvinit (tty1-6) runs a login on.
pub const DISK_GUEST_LOG_LINE: u32 = 15;

/// A guest that boots a disk image as `/` with the image's own init (systemd, sysvinit):
/// `uml run --root`, umld's Launch `root`.
///
/// Console lines: con0 is the launcher's terminal (or, detached, a host pty that
/// `uml console NAME` attaches to), where a `uml image create` image runs a getty; every other
/// line is a host pty once the guest opens it (systemd's getty on tty1 is con1: a second
/// login with `uml console NAME con1`); the kernel's log goes to con15, kept in the boot log.
#[derive(Debug, Clone)]
pub struct DiskGuest {
    /// The root disk's kernel argument, `ubd0=FILE` or `ubd0=COW,BASE` ([`disk_arg`] unit 0).
    pub root: String,
    /// The guest's hostname (`systemd.hostname=`; the umid unless the user says otherwise).
    pub hostname: String,
    /// con0 on a host pty instead of the launcher's stdin and stdout.
    pub detached: bool,
}

impl DiskGuest {
    /// The kernel arguments, before disks, networks and the user's own. `noreboot` where the
    /// kernel has it (the option table; 6.1.176 and 7.x): a reboot, which is what systemd makes of ctrl-alt-del, then ends
    /// the kernel instead of booting the guest again.
    pub fn kernel_args(
        &self,
        mem: &str,
        umid: &str,
        uml_dir: &Path,
        profile: &crate::kernel::Profile,
    ) -> Vec<String> {
        let mut args = vec![
            format!("mem={mem}"),
            self.root.clone(),
            "root=/dev/ubda".into(),
            "rw".into(),
            "con=pts".into(),
            if self.detached {
                "con0=pts".into()
            } else {
                "con0=fd:0,fd:1".into()
            },
            format!("con{DISK_GUEST_LOG_LINE}=null,fd:3"),
            format!("console=tty{DISK_GUEST_LOG_LINE}"),
            "quiet".into(),
            format!("umid={umid}"),
            format!("uml_dir={}", uml_dir.display()),
            format!("systemd.hostname={}", self.hostname),
        ];
        if crate::options::by_name("noreboot")
            .is_some_and(|o| o.presence(profile) == crate::options::Presence::Present)
        {
            args.push("noreboot".into());
        }
        args.extend(crate::kernel::delay::lpj_word());
        args
    }
}

/// The host ptys a running kernel holds (`/dev/ptmx` descriptors): the console and serial
/// lines the guest has opened on `pts` channels. Only these are ever opened on a guest's
/// behalf; a device name a guest prints is not trusted.
pub fn kernel_ptys(pid: u32) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return found;
    };
    for fd in dir.flatten().take(4096) {
        if fs::read_link(fd.path()).ok().as_deref() != Some(Path::new("/dev/ptmx")) {
            continue;
        }
        let info = fs::read_to_string(format!(
            "/proc/{pid}/fdinfo/{}",
            fd.file_name().to_string_lossy()
        ))
        .unwrap_or_default();
        if let Some(idx) = info
            .lines()
            .find_map(|l| l.strip_prefix("tty-index:"))
            .and_then(|i| i.trim().parse::<u32>().ok())
        {
            found.push(PathBuf::from(format!("/dev/pts/{idx}")));
        }
    }
    found
}

/// Whether console output ends in a login prompt (`web1 login: `).
pub(super) fn shows_login_prompt(tail: &[u8]) -> bool {
    let text = String::from_utf8_lossy(tail);
    text.trim_end_matches([' ', '\0']).ends_with("login:")
}
