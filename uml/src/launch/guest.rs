//! The built-in guest of `uml run`: the host's `/` as a read-only hostfs root, tmpfs where a
//! shell needs to write, and either an interactive shell or one command; its init (compiled, or a
//! script) and kernel arguments.

use super::*;

/// What the built-in guest runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// An interactive login shell on the user's terminal; the guest powers off when it exits.
    Shell,
    /// A login shell on a host pty that `uml console` attaches to, started again whenever it
    /// exits (detaching hangs the line up, which ends the shell), like a getty: the guest runs
    /// until it is shut down.
    RespawningShell,
    /// One command; its exit status becomes the kernel's.
    Command(Vec<String>),
}

/// The built-in guest of `uml run`: host `/` read-only over hostfs, tmpfs on the directories a
/// shell writes to, proc/sys/dev mounted, the payload in the user's working directory.
#[derive(Debug, Clone)]
pub struct DefaultGuest {
    pub payload: Payload,
    /// The guest command's working directory (the host path, which is the same in the guest).
    pub cwd: PathBuf,
    /// Environment for the payload.
    pub env: Vec<(String, String)>,
    /// Host directories mounted read-write at the same path in the guest.
    pub writable: Vec<PathBuf>,
    /// Whether the host's stdin and stdout are terminals; if not, the guest's tty is made raw
    /// so bytes pass unchanged (no echo of piped input, no `\r` added to output).
    pub stdin_tty: bool,
    pub stdout_tty: bool,
}

/// Directories that get a tmpfs, so a shell and ordinary tools can write.
pub const TMPFS_DIRS: &[&str] = &[
    "/tmp",
    "/run",
    "/var/tmp",
    "/var/log",
    "/var/cache",
    "/var/lib/sudo",
];

/// `'...'` quoting for sh.
pub fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-=+:,@%".contains(&b))
    {
        return s.to_owned();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

impl DefaultGuest {
    /// The kernel arguments of the built-in guest, before any the user adds; `lpj=` from the
    /// host where it can be told ([`crate::kernel::delay`]), so that the kernel skips its
    /// delay-loop calibration.
    pub fn kernel_args(&self, init: &Path, mem: &str, umid: &str, uml_dir: &Path) -> Vec<String> {
        vec![
            format!("mem={mem}"),
            "root=/dev/root".into(),
            "rootfstype=hostfs".into(),
            "rootflags=/".into(),
            "ro".into(),
            format!("init={}", init.display()),
            // Debian's default for con1-15 does not parse; silence the lines we don't use.
            "con=null".into(),
            "con0=fd:0,fd:1".into(),
            "con1=null,fd:2".into(),
            "con2=null,fd:3".into(),
            "console=tty2".into(),
            "quiet".into(),
            format!("umid={umid}"),
            format!("uml_dir={}", uml_dir.display()),
        ]
        .into_iter()
        .chain(crate::kernel::delay::lpj_word())
        .collect()
    }

    /// The init script (runs as the guest's pid 1).
    pub fn init_script(&self) -> String {
        let mut s = String::from("#!/bin/sh\n# init of a guest started by `uml run`\n");
        s.push_str(
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\nexport PATH\n",
        );
        s.push_str("mount -t proc proc /proc\nmount -t sysfs sysfs /sys\n");
        s.push_str("mount -t devtmpfs devtmpfs /dev 2>/dev/null\n");
        s.push_str("mkdir -p /dev/pts /dev/shm 2>/dev/null\n");
        s.push_str("mount -t devpts -o gid=5,mode=620 devpts /dev/pts 2>/dev/null\n");
        s.push_str("mount -t tmpfs tmpfs /dev/shm 2>/dev/null\n");
        for dir in TMPFS_DIRS {
            s.push_str(&format!(
                "[ -d {dir} ] && mount -t tmpfs -o mode=1777 tmpfs {dir}\n"
            ));
        }
        // Host directories that must stay visible: the writable ones, and the working
        // directory when a tmpfs above hid it (a project under /tmp). hostfs takes the host
        // path as its mount data.
        let hidden = |p: &Path| TMPFS_DIRS.iter().any(|t| p.starts_with(t));
        for dir in &self.writable {
            let d = sh_quote(&dir.to_string_lossy());
            s.push_str(&format!(
                "mkdir -p {d} 2>/dev/null; mount -t hostfs -o {d} hostfs {d}\n"
            ));
        }
        if hidden(&self.cwd) && !self.writable.iter().any(|w| self.cwd.starts_with(w)) {
            let d = sh_quote(&self.cwd.to_string_lossy());
            s.push_str(&format!(
                "mkdir -p {d} 2>/dev/null; mount -r -t hostfs -o {d} hostfs {d}\n"
            ));
        }
        // The vector driver names interfaces vec<n>, the legacy one eth<n> (uml::net): the
        // same name on every kernel, with the vector name kept as an altname.
        s.push_str(
            "for i in /sys/class/net/vec*; do [ -e \"$i\" ] || continue; n=${i##*/vec}\n\
             if [ -e \"/sys/class/net/eth$n\" ]; then echo \"uml: the guest's vec$n keeps its name: eth$n exists\" >/dev/tty1\n\
             elif ip link set \"vec$n\" name \"eth$n\" 2>/dev/null; then ip link property add dev \"eth$n\" altname \"vec$n\" 2>/dev/null\n\
             else echo \"uml: the guest's vec$n keeps its name: renaming it eth$n needs the ip command (iproute2) on the host\" >/dev/tty1; fi; done\n",
        );
        // Host-side settings on the kernel command line, read the way a distribution's init
        // reads them: `ip=ADDR::GW:MASK::IFACE:none` (uml run --net …,ip=) and
        // `systemd.hostname=` (the umid by default).
        s.push_str(
            "hostname uml 2>/dev/null\n\
             for w in $(cat /proc/cmdline); do case $w in\n\
             systemd.hostname=*) hostname \"${w#*=}\" 2>/dev/null;;\n\
             ip=*) IFS=: read -r a _ gw mask _ dev _ <<EOF\n${w#ip=}\nEOF\n\
             [ -e \"/sys/class/net/$dev\" ] || dev=\"eth${dev#vec}\"\n\
             ip addr add \"$a/$mask\" dev \"$dev\" && ip link set \"$dev\" up;;\n\
             esac; done\n",
        );
        // ctrl-alt-del (mconsole `cad`, `uml shutdown`) becomes SIGINT to init: power off.
        s.push_str("echo 0 > /proc/sys/kernel/ctrl-alt-del\n");
        s.push_str(
            "trap 'kill -TERM $child 2>/dev/null; sync; poweroff -f >/dev/null 2>&1' INT TERM\n",
        );
        // Hold the console line open for the guest's whole life: its input buffer is flushed
        // when the last opener closes it.
        s.push_str("exec 3<>/dev/tty0\n");
        if !self.stdin_tty {
            // Input is text from a pipe, ended by ^D: no echo, no editing characters.
            s.push_str("stty -echo -icrnl -isig -iexten -ixon erase undef kill undef werase undef lnext undef rprnt undef eol undef eol2 undef <&3 2>/dev/null\n");
        }
        if !self.stdout_tty {
            s.push_str(
                "stty -opost < /dev/tty0 2>/dev/null\nstty -opost < /dev/tty1 2>/dev/null\n",
            );
        }
        for (k, v) in &self.env {
            s.push_str(&format!("{k}={}; export {k}\n", sh_quote(v)));
        }
        s.push_str(&format!(
            "cd {} 2>/dev/null || cd /\n",
            sh_quote(&self.cwd.to_string_lossy())
        ));
        s.push_str(&format!(
            "printf '{}' > /proc/mconsole 2>/dev/null\n",
            String::from_utf8_lossy(BOOTED_MESSAGE).replace('\n', "\\n")
        ));
        // The payload runs as an asynchronous list so that init's trap can act on ctrl-alt-del
        // at once; POSIX starts such a list with SIGINT and SIGQUIT ignored, and everything it
        // runs would inherit that (Ctrl-C could not stop a job). `env --default-signal`
        // restores them.
        let run = match &self.payload {
            Payload::Shell => "shell=${SHELL:-/bin/sh}; [ -x \"$shell\" ] || shell=/bin/sh\n\
                 setsid -c -w env --default-signal=INT,QUIT \"$shell\" -l </dev/tty0 >/dev/tty0 2>&1 &\n"
                .to_owned(),
            Payload::RespawningShell => "shell=${SHELL:-/bin/sh}; [ -x \"$shell\" ] || shell=/bin/sh\n\
                 (while :; do setsid -c -w env --default-signal=INT,QUIT \"$shell\" -l </dev/tty0 >/dev/tty0 2>&1; sleep 0.2; done) &\n"
                .to_owned(),
            Payload::Command(argv) => {
                let words: Vec<String> = argv.iter().map(|a| sh_quote(a)).collect();
                let ctty = if self.stdin_tty { "-c " } else { "" };
                format!(
                    "setsid {ctty}-w env --default-signal=INT,QUIT {} </dev/tty0 >/dev/tty0 2>/dev/tty1 &\n",
                    words.join(" ")
                )
            }
        };
        s.push_str(&run);
        s.push_str("child=$!\nwait $child\nstatus=$?\n");
        s.push_str("echo $status > /proc/exitcode\nsync\npoweroff -f >/dev/null 2>&1\n");
        s
    }

    /// Writes the guest's init, executable, to `path`: the compiled init
    /// ([`crate::guest_init`]) when a `uml` binary can run it ([`crate::guest_init::program`]),
    /// else the init script.
    ///
    /// # Errors
    /// [`LaunchError::Prepare`] when it cannot be written.
    pub fn write_init(&self, path: &Path) -> Result<(), LaunchError> {
        self.write_init_with(path, crate::guest_init::program().as_ref())
    }

    /// Writes the guest's init to `path`: the compiled init run by `program` (`uml-init` or a
    /// `uml` binary), or the init script with `None`.
    ///
    /// # Errors
    /// [`LaunchError::Prepare`] when it cannot be written.
    pub fn write_init_with(
        &self,
        path: &Path,
        program: Option<&crate::guest_init::Interpreter>,
    ) -> Result<(), LaunchError> {
        let err = |source| LaunchError::Prepare {
            path: path.to_owned(),
            source,
        };
        let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str()))
        else {
            return Err(err(io::Error::other("not a file path")));
        };
        let text = match program {
            Some(program) => crate::guest_init::Config::from_guest(self).encode(program),
            None => self.init_script().into_bytes(),
        };
        // In a directory of this user's alone, as a new file: never through a symlink that
        // someone planted where the init goes.
        crate::instance::create_file(dir, name, &text, 0o755).map_err(LaunchError::Runtime)?;
        Ok(())
    }
}
