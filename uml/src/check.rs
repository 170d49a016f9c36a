//! Validate a UML command line against what a given kernel really does with it.
//!
//! The kernel is described by its [`Profile`] ([`CheckEnv::kernel`]): an option, `eth`
//! transport or channel type that kernel lacks is reported with what that kernel does with the
//! word instead (from the option table, [`crate::options`]).
//!
//! [`check`] looks at a parsed [`CommandLine`] and returns a [`Report`] of [`Finding`]s: errors
//! (the kernel rejects the option, the device will not exist, or the boot fails), warnings (the
//! kernel accepts it but not the way the user meant: silently ignored, random MAC, obsolete) and
//! notes (harmless, but worth knowing: the word also reaches init). It never panics and never
//! changes anything; what it may read (the filesystem, environment variables) is given by
//! [`CheckEnv`].
//!
//! COW header validation (backing size and mtime) is not done here; see [`crate::cow`].

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::cmdline::{Arg, Channel, Channels, CommandLine, ParseError, Transport};
use crate::kernel::{self, Profile, Version};
use crate::options::{self, Fate, InitSlot, OptionSpec, Presence, Status};

/// Longest unix socket path the kernel can bind or connect to (`sun_path` is 108 bytes with NUL).
pub const MAX_SOCKET_PATH: usize = 107;
/// Longest umid (`UMID_LEN` − 1, `arch/um/os-Linux/umid.c`).
pub const MAX_UMID: usize = 63;
/// Kernel command line size (`COMMAND_LINE_SIZE`, `arch/um/include/asm/setup.h`).
pub const MAX_COMMAND_LINE: usize = 4096;
/// Init argv/envp slots (`CONFIG_INIT_ENV_ARG_LIMIT` in UML, `init/main.c`).
pub const MAX_INIT_SLOTS: usize = 128;
/// Most `key=value` pairs a `vec` option may have (`MAX_ARGS`, `vector_user.c`).
pub const MAX_VEC_PAIRS: usize = 20;

/// What the validator may look at.
#[derive(Debug, Clone)]
pub struct CheckEnv {
    /// Look at host files (images, sockets, mount flags). Off: only the text is checked.
    pub filesystem: bool,
    /// Environment variables as the kernel will see them (`HOME`, `TMPDIR`, `TMP`, `TEMP`,
    /// `DISPLAY`). A missing key is an unset variable.
    pub vars: BTreeMap<String, String>,
    /// The `uml_dir` a launcher will pass when the command line has none (the kernel's own
    /// default is `$HOME/.uml/`).
    pub default_uml_dir: Option<PathBuf>,
    /// The kernel the verdicts are for.
    pub kernel: Profile,
}

impl CheckEnv {
    /// Filesystem checks on, variables from this process's environment, and the profile of the
    /// kernel that would run by default ([`kernel::resolve`]`(None)`: `$UML_KERNEL`, `linux`
    /// on `PATH`, then kernels built by `uml kernel build`). When no kernel is found or it
    /// cannot be profiled, Debian's 6.1 is assumed ([`Profile::assumed`]), as before kernels
    /// were profiled. A caller that knows which kernel it will run sets [`kernel`](Self::kernel)
    /// itself.
    pub fn from_process() -> CheckEnv {
        let vars = ["HOME", "TMPDIR", "TMP", "TEMP", "DISPLAY"]
            .iter()
            .filter_map(|k| std::env::var(k).ok().map(|v| ((*k).to_owned(), v)))
            .collect();
        let kernel = kernel::resolve(None)
            .and_then(|path| Profile::read(&path))
            .unwrap_or_else(|err| {
                tracing::debug!("{err}; checking against Debian's 6.1");
                Profile::assumed(Version::new(6, 1, 0))
            });
        CheckEnv {
            filesystem: true,
            vars,
            default_uml_dir: None,
            kernel,
        }
    }

    /// No filesystem access and no environment: a pure check of the words, against Debian's
    /// 6.1 ([`Profile::assumed`]).
    pub fn offline() -> CheckEnv {
        CheckEnv {
            filesystem: false,
            vars: BTreeMap::new(),
            default_uml_dir: None,
            kernel: Profile::assumed(Version::new(6, 1, 0)),
        }
    }

    /// The same, for the kernel `kernel`.
    pub fn with_kernel(self, kernel: Profile) -> CheckEnv {
        CheckEnv { kernel, ..self }
    }

    fn var(&self, key: &str) -> Option<&str> {
        self.vars
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; nothing goes wrong.
    Note,
    /// The kernel accepts it, but not as meant (ignored, replaced, obsolete).
    Warning,
    /// The kernel rejects it, a device will be missing, or the boot fails.
    Error,
}

impl Severity {
    /// `error`, `warning` or `note`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Note => "note",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// One problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Error, warning or note.
    pub severity: Severity,
    /// A stable identifier of the kind of finding (`ubd-unit-range`, `udb-typo`, …).
    pub code: &'static str,
    /// Index of the offending word in the argv, if one word is at fault.
    pub index: Option<usize>,
    /// The offending word.
    pub arg: Option<String>,
    /// What is wrong, naming the bad part and what is accepted.
    pub message: String,
    /// What the option does (its help text), for `--explain`.
    pub explain: Option<&'static str>,
}

/// Everything [`check`] found, in argv order, command-line-wide findings last.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The findings.
    pub findings: Vec<Finding>,
}

impl Report {
    /// How many findings have this severity.
    pub fn count(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == severity)
            .count()
    }

    /// At least one error.
    pub fn has_errors(&self) -> bool {
        self.count(Severity::Error) > 0
    }

    /// The worst severity found.
    pub fn worst(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }

    /// Findings with this code.
    pub fn with_code<'a>(&'a self, code: &'a str) -> impl Iterator<Item = &'a Finding> + 'a {
        self.findings.iter().filter(move |f| f.code == code)
    }
}

/// Check `cmdline` as the kernel of `env.kernel` would see it.
pub fn check(cmdline: &CommandLine, env: &CheckEnv) -> Report {
    let mut c = Checker {
        env,
        report: Report::default(),
        ubd_units: HashMap::new(),
        eth_units: HashMap::new(),
        vec_units: HashMap::new(),
        lines: HashMap::new(),
        umid: None,
        umid_seen: false,
        uml_dir: None,
    };
    let args = cmdline.args();
    let dashdash = args.iter().position(|a| a.to_string() == "--");
    for (index, arg) in args.iter().enumerate() {
        if dashdash.is_some_and(|d| index > d) {
            c.push(
                Severity::Note,
                "after-dashdash",
                Some((index, arg)),
                "comes after `--`: the kernel passes it to init without parsing it".into(),
            );
            continue;
        }
        c.arg(index, arg);
    }
    c.whole(cmdline, dashdash);
    c.report
}

/// The help text of the option `arg` belongs to, for `--explain`.
pub fn explain(arg: &Arg) -> Option<&'static str> {
    arg.spec().map(OptionSpec::help)
}

struct Checker<'e> {
    env: &'e CheckEnv,
    report: Report,
    ubd_units: HashMap<u8, usize>,
    eth_units: HashMap<u64, usize>,
    vec_units: HashMap<u64, usize>,
    lines: HashMap<(&'static str, Option<u64>), usize>,
    umid: Option<String>,
    umid_seen: bool,
    uml_dir: Option<String>,
}

impl Checker<'_> {
    fn push(
        &mut self,
        severity: Severity,
        code: &'static str,
        at: Option<(usize, &Arg)>,
        message: String,
    ) {
        self.report.findings.push(Finding {
            severity,
            code,
            index: at.map(|(i, _)| i),
            arg: at.map(|(_, a)| a.to_string()),
            message,
            explain: at.and_then(|(_, a)| explain(a)),
        });
    }

    fn arg(&mut self, index: usize, arg: &Arg) {
        let at = Some((index, arg));
        if let Some(spec) = arg.spec()
            && !self.status(index, arg, spec)
        {
            self.rendering(index, arg);
            return;
        }
        self.rendering(index, arg);
        if let (Arg::Verbatim { .. }, Arg::Ubd { unit, .. }) = (arg, arg.meaning()) {
            let letter = char::from(b'a'.saturating_add(*unit));
            self.push(
                Severity::Note,
                "ubd-unit-read-as",
                at,
                format!(
                    "read as ubd{unit} (/dev/ubd{letter}): the unit is a base-0 number (a leading \
                     0 means octal, 0x hex) or a letter a-p"
                ),
            );
        }
        match arg.meaning() {
            Arg::Invalid {
                error, spec, text, ..
            } => {
                self.invalid(index, arg, spec, error);
                match crate::cmdline::accepted_part(text, error) {
                    Some(Arg::Eth { unit, transport }) => self.eth(index, arg, unit, &transport),
                    Some(Arg::Vec { unit, pairs }) => self.vec(index, arg, unit, &pairs),
                    _ => {}
                }
            }
            Arg::Unknown(word) => self.unknown(index, arg, word),
            Arg::Known { spec, text } => self.known(index, arg, spec, text),
            Arg::Umid(name) => self.umid(index, arg, name),
            Arg::UmlDir(dir) => {
                let dir = dir.display().to_string();
                if dir.is_empty() {
                    self.push(
                        Severity::Warning,
                        "uml-dir-empty",
                        at,
                        "an empty uml_dir is rejected with a warning; the default ~/.uml/ is used"
                            .into(),
                    );
                } else {
                    self.uml_dir = Some(dir);
                }
            }
            Arg::Ubd {
                unit,
                flags,
                file,
                backing,
                serial: _,
            } => {
                if let Some(first) = self.ubd_units.insert(*unit, index) {
                    self.push(
                        Severity::Error,
                        "ubd-duplicate",
                        at,
                        format!(
                            "ubd unit {unit} is already given by argument {first}: the kernel \
                             refuses this one (`Device is already configured`)"
                        ),
                    );
                }
                if flags.no_cow && backing.is_some() {
                    self.push(
                        Severity::Error,
                        "ubd-raw-with-cow",
                        at,
                        "flag `d` (use the file raw) cannot go with a backing file: drop `d` or \
                         the backing file (`Can't specify both 'd' and a cow file`)"
                            .into(),
                    );
                }
                match (file, backing) {
                    (None, _) => self.push(
                        Severity::Error,
                        "ubd-no-file",
                        at,
                        format!("ubd{unit} names no file: expected ubd{unit}=<file>"),
                    ),
                    (Some(file), None) => {
                        self.file_exists(at, "ubd-missing-file", file, "image");
                        // A missing file is one finding: reading its header would only say
                        // again that it cannot be opened.
                        if !flags.no_cow && (!self.env.filesystem || file.exists()) {
                            self.cow(at, file, None);
                        }
                    }
                    (Some(file), Some(backing)) => {
                        self.file_exists(at, "ubd-missing-backing", backing, "backing file");
                        if self.env.filesystem && file.exists() {
                            self.cow(at, file, Some(backing));
                        }
                        if self.env.filesystem && !file.exists() {
                            self.push(
                                Severity::Note,
                                "ubd-cow-created",
                                at,
                                format!(
                                    "COW file `{}` does not exist: the kernel creates it over `{}`",
                                    file.display(),
                                    backing.display()
                                ),
                            );
                        }
                    }
                }
            }
            Arg::Con { unit, channels } => self.line(index, arg, "con", *unit, channels),
            Arg::Ssl { unit, channels } => self.line(index, arg, "ssl", *unit, channels),
            Arg::Eth { unit, transport } => self.eth(index, arg, *unit, transport),
            Arg::Vec { unit, pairs } => self.vec(index, arg, *unit, pairs),
            Arg::MconsoleNotify(path) => {
                self.socket_path(at, "notify-path-too-long", "mconsole notify socket", path);
                self.socket_exists(
                    at,
                    "notify-missing",
                    path,
                    "the kernel cannot send notifications",
                );
            }
            Arg::VirtioDevice { socket, .. } => {
                self.socket_path(at, "virtio-path-too-long", "vhost-user socket", socket);
                self.socket_exists(
                    at,
                    "virtio-missing",
                    socket,
                    "the device probe fails with error -2",
                );
            }
            Arg::Hostfs { root, flags } => {
                for flag in flags.iter().filter(|f| f.as_str() != "append") {
                    self.push(
                        Severity::Warning,
                        "hostfs-flag",
                        at,
                        format!(
                            "hostfs flag `{flag}` is not supported: the only flag is `append` \
                             (`hostfs_args - unsupported option`)"
                        ),
                    );
                }
                self.dir_exists(at, "hostfs-missing", root);
            }
            Arg::Initrd(file) => self.file_exists(at, "initrd-missing", file, "initrd"),
            Arg::Mem(0) => self.push(
                Severity::Warning,
                "mem-zero",
                at,
                "mem=0: expected a size such as 256M".into(),
            ),
            _ => {}
        }
    }

    /// A typed argument (built by a program) must read back as itself, and no word should hold
    /// a space: the kernel joins argv with spaces and its generic parser splits them again.
    fn rendering(&mut self, index: usize, arg: &Arg) {
        let at = Some((index, arg));
        let word = arg.to_string();
        let typed = !matches!(
            arg,
            Arg::Known { .. } | Arg::Verbatim { .. } | Arg::Invalid { .. } | Arg::Unknown(_)
        );
        if typed && Arg::parse(&word).meaning() != arg {
            self.push(
                Severity::Error,
                "ambiguous",
                at,
                "a field holds a character the kernel splits on (`,` or `:` in ubd files, `,` in \
                 transport fields and vec values, `=` in vec values): the kernel would read \
                 something else"
                    .into(),
            );
        }
        let removed = matches!(arg.meaning(), Arg::Umid(_))
            || arg.spec().is_some_and(OptionSpec::removed_from_cmdline);
        if !removed && word.contains([' ', '\t', '\n']) && !word.contains('"') {
            self.push(
                Severity::Error,
                "whitespace",
                at,
                "contains whitespace: the kernel joins its argv with spaces and splits the \
                 command line again, so this becomes several parameters"
                    .into(),
            );
        }
    }

    /// Whether this kernel has the option, and where the word ends up, from the option table.
    /// Returns false when the kernel has no handler for it: nothing more is to be checked.
    fn status(&mut self, index: usize, arg: &Arg, spec: &'static OptionSpec) -> bool {
        let at = Some((index, arg));
        let profile = &self.env.kernel;
        let series = profile.series();
        let word = arg.to_string();
        let presence = spec.presence(profile);
        if presence.is_absent() {
            if let Arg::Eth { unit, transport } = arg.meaning() {
                self.eth_without_driver(index, arg, *unit, transport);
                return false;
            }
            let reason = presence.reason(profile);
            let fate = spec.fate_when_absent(&word);
            // Where the generic kernel still claims the word (`debug`, `iomem=`) something
            // sensible happens; otherwise what was asked for silently does not.
            let (severity, code) = match (spec.status(), spec.absent_fate()) {
                (Status::Obsolete, _) | (_, Some(_)) => (Severity::Warning, "not-in-kernel"),
                (Status::Current, None) => (Severity::Error, "not-in-kernel"),
            };
            self.push(
                severity,
                code,
                at,
                format!("`{}` {reason}: the word {fate}", spec.syntax()),
            );
            return false;
        }
        if presence == Presence::Unknown {
            self.push(
                Severity::Note,
                "kernel-unknown",
                at,
                format!(
                    "`{}` exists on some kernels ({}); whether {series} has it was not examined",
                    spec.syntax(),
                    spec.kernels().describe()
                ),
            );
        }
        let fate = spec
            .init_on(profile)
            .map_or("is ignored", |slot| match slot {
                InitSlot::Argv => Fate::Argv.describe(),
                InitSlot::Env => Fate::Env.describe(),
            });
        match spec.status() {
            Status::Obsolete => {
                // An unclaimed word's message comes from another handler matching it by prefix
                // (`debugtrace` fires `debug`'s), which only kernels with that handler print.
                let logged = spec.stage() != options::Stage::Unclaimed
                    || options::all().iter().any(|other| {
                        !std::ptr::eq(other, spec)
                            && other.matches(&word)
                            && !other.presence(profile).is_absent()
                    });
                let also = spec
                    .kernel_message()
                    .filter(|_| logged)
                    .map(|m| format!("; the kernel also logs `{m}`"))
                    .unwrap_or_default();
                self.push(
                    Severity::Warning,
                    "obsolete",
                    at,
                    format!(
                        "`{}` is obsolete and has no effect: it {fate}{also}",
                        spec.syntax()
                    ),
                );
            }
            Status::Current => {
                if let (Some(slot), false) = (
                    spec.init_on(profile),
                    matches!(arg.meaning(), Arg::Invalid { .. }),
                ) {
                    let what = match slot {
                        InitSlot::Argv => "an argument",
                        InitSlot::Env => "an environment variable",
                    };
                    self.push(
                        Severity::Note,
                        "reaches-init",
                        at,
                        format!(
                            "stays on the kernel command line: init also gets `{word}` as {what}"
                        ),
                    );
                }
            }
        }
        true
    }

    /// `eth<n>=` on a kernel without the legacy network driver (7.x has only the vector one):
    /// the word is unknown and lands in init's environment, and no interface exists. Verified
    /// on 7.2.12: `Unknown kernel command line parameters "eth0=daemon,,unix,/tmp/x.ctl", will
    /// be passed to user space.`
    fn eth_without_driver(&mut self, index: usize, arg: &Arg, unit: u64, transport: &Transport) {
        let series = self.env.kernel.series();
        let instead = match transport {
            Transport::Daemon { ctl, .. } => format!(
                "the vector driver has no uml_switch client; `vec{unit}:transport=bess,src=<own \
                 socket>,dst=<switch socket>` connects to a switch that accepts SOCK_SEQPACKET \
                 connections (one Ethernet frame per message){}",
                ctl.as_ref()
                    .map(|c| format!(" instead of the uml_switch control socket {}", c.display()))
                    .unwrap_or_default()
            ),
            Transport::Tuntap { dev: Some(dev), .. }
            | Transport::Ethertap { dev: Some(dev), .. } => {
                format!("use `vec{unit}:transport=tap,ifname={dev}`")
            }
            Transport::Tuntap { dev: None, .. } => format!(
                "use `vec{unit}:transport=tap` (the kernel creates a tap device, which needs \
                 CAP_NET_ADMIN; uml_net is not used)"
            ),
            Transport::Vde { switch, .. } => format!(
                "use `vec{unit}:transport=vde{}` (runs vde_plug)",
                switch
                    .as_ref()
                    .map(|s| format!(",vnl={}", s.display()))
                    .unwrap_or_default()
            ),
            Transport::Ucast { remote, .. } => format!(
                "the closest is a point-to-point tunnel, `vec{unit}:transport=l2tpv3,dst={},…` or \
                 `transport=gre`, but the peer must speak that encapsulation: a 6.1 guest's ucast \
                 is not compatible",
                remote.as_deref().unwrap_or("<peer>")
            ),
            Transport::Mcast { .. } => format!(
                "nothing is equivalent: l2tpv3 and gre are point-to-point tunnels, not a \
                 multicast group; for guests on one host connect each with \
                 `vec{unit}:transport=bess` to one switch"
            ),
            _ => format!(
                "the vector driver's transports are tap, hybrid, raw, gre, l2tpv3, bess, fd and \
                 vde: `vec{unit}:transport=…`"
            ),
        };
        self.push(
            Severity::Error,
            "eth-not-in-kernel",
            Some((index, arg)),
            format!(
                "this {series} kernel has no eth driver (no CONFIG_UML_NET; 7.x has only the \
                 vector driver): no eth{unit} is created and the word lands in init's \
                 environment; {instead}"
            ),
        );
    }

    fn invalid(&mut self, index: usize, arg: &Arg, spec: &OptionSpec, error: &ParseError) {
        let at = Some((index, arg));
        let (severity, code) = match error {
            ParseError::IgnoredFields { .. } => (Severity::Warning, "eth-ignored-fields"),
            ParseError::VecKeyWithoutValue(_) => (Severity::Warning, "vec-key-without-value"),
            ParseError::ExtraFields { .. } => (Severity::Error, "eth-extra-fields"),
            ParseError::UbdUnit(_) | ParseError::UbdUnitRange(_) => (Severity::Error, "ubd-unit"),
            ParseError::UbdFlag(_) | ParseError::UbdTooManyFlags(_) | ParseError::UbdEquals(_) => {
                (Severity::Error, "ubd-flags")
            }
            ParseError::UbdFakeMajor(_) => (Severity::Error, "ubd-fake-major"),
            ParseError::LineUnit { .. } | ParseError::LineUnitRange { .. } => {
                (Severity::Error, "line-unit")
            }
            ParseError::Channel { .. } => (Severity::Error, "channel"),
            ParseError::EthUnit(_) | ParseError::EthEquals(_) => (Severity::Error, "eth-syntax"),
            ParseError::VecColon(_) | ParseError::VecUnit(_) | ParseError::VecDoubleEquals(_) => {
                (Severity::Error, "vec-syntax")
            }
            ParseError::Mconsole(_) => (Severity::Error, "mconsole-syntax"),
            ParseError::Virtio(_) => (Severity::Error, "virtio-syntax"),
            ParseError::Seccomp(_) => (Severity::Error, "seccomp-value"),
            ParseError::Size(_) => (Severity::Error, "size"),
        };
        let _ = spec;
        self.push(severity, code, at, error.to_string());
    }

    fn unknown(&mut self, index: usize, arg: &Arg, word: &str) {
        let at = Some((index, arg));
        let message = match word.split_once('=') {
            _ if Fate::of_unclaimed(word) == Fate::Dropped => format!(
                "`{word}` has a `.` before any `=`: the kernel takes it for a parameter of a \
                 module that is not there and drops it silently; init does not get it"
            ),
            Some((key, _)) => format!(
                "no option claims `{key}=`: the kernel passes it to init's environment \
                 (`Unknown kernel command line parameters`)"
            ),
            None if word == "--" => {
                "`--` ends the kernel's options: what follows goes to init".into()
            }
            None => format!(
                "no option claims `{word}`: the kernel passes it to init as an argument \
                 (`Unknown kernel command line parameters`)"
            ),
        };
        self.push(Severity::Note, "unknown", at, message);
    }

    fn known(&mut self, index: usize, arg: &Arg, spec: &OptionSpec, text: &str) {
        let at = Some((index, arg));
        match spec.name() {
            "udb" => {
                let fixed = format!("ubd{}", text.get(3..).unwrap_or(""));
                self.push(
                    Severity::Error,
                    "udb-typo",
                    at,
                    format!(
                        "`{text}` attaches no disk: the kernel only logs `{} specified on command \
                         line is almost certainly a ubd -> udb TYPO`; did you mean `{fixed}`?",
                        text
                    ),
                );
            }
            "debug" => self.push(
                Severity::Warning,
                "debug-obsolete",
                at,
                "`debug` no longer starts UML under gdb: the kernel prints `'debug' is not \
                 necessary to gdb UML in skas mode - run 'gdb linux'` and only raises the \
                 console loglevel; run `gdb linux` instead"
                    .into(),
            ),
            "--help" | "--version" | "--showconfig" => self.push(
                Severity::Note,
                "exits",
                at,
                format!("`{text}` makes the kernel print and exit 0 without booting"),
            ),
            "iomem=" => {
                let value = text.get(6..).unwrap_or("");
                match value.split_once(',') {
                    None => self.push(
                        Severity::Error,
                        "iomem-syntax",
                        at,
                        "expected iomem=<name>,<file> (`parse_iomem : failed to parse iomem`)"
                            .into(),
                    ),
                    Some((_, file)) => {
                        self.file_exists(at, "iomem-missing", Path::new(file), "iomem file")
                    }
                }
            }
            "stderr=" => {
                let value = text.get(7..).unwrap_or("");
                if !value.bytes().all(|b| b.is_ascii_digit()) || value.is_empty() {
                    self.push(
                        Severity::Warning,
                        "stderr-value",
                        at,
                        format!("stderr=`{value}` is not a number: expected stderr=1 or stderr=0"),
                    );
                }
            }
            _ => {}
        }
    }

    fn umid(&mut self, index: usize, arg: &Arg, name: &str) {
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

    fn line(
        &mut self,
        index: usize,
        arg: &Arg,
        device: &'static str,
        unit: Option<u64>,
        channels: &Channels,
    ) {
        let at = Some((index, arg));
        if let Some(first) = self.lines.insert((device, unit), index) {
            let which = unit.map_or_else(|| format!("{device}="), |u| format!("{device}{u}="));
            self.push(
                Severity::Warning,
                "line-duplicate",
                at,
                format!("{which} is also given by argument {first}: the last one wins"),
            );
        }
        let chans: Vec<&Channel> = match channels {
            Channels::None => Vec::new(),
            Channels::Both(c) => vec![c],
            Channels::Pair(i, o) => vec![i, o],
        };
        for chan in chans {
            // Channel types are prefix-matched in table order (parse_chan(), chan_kern.c).
            let text = chan.to_string();
            let kind = options::channels()
                .iter()
                .find(|c| text.starts_with(c.name()));
            if let Some(kind) = kind {
                let presence = kind.kernels().presence(&self.env.kernel);
                if presence.is_absent() {
                    self.push(
                        Severity::Error,
                        "channel-not-in-kernel",
                        at,
                        format!(
                            "channel type `{}` {}: the line cannot be set up",
                            kind.name(),
                            presence.reason(&self.env.kernel)
                        ),
                    );
                    continue;
                }
            }
            match chan {
                // getmaster(), pty.c: the pty channel opens a BSD master /dev/pty[p-za-e][0-9a-f];
                // a host without them (no CONFIG_LEGACY_PTYS, as most distributions build) logs
                // `getmaster - no usable host pty devices` and the line has no channel.
                Channel::Pty if self.env.filesystem && !host_has_legacy_ptys() => self.push(
                    Severity::Error,
                    "pty-unavailable",
                    at,
                    "this host has no legacy BSD ptys (/dev/ptyp0 …): the kernel logs \
                     `getmaster - no usable host pty devices` and the line gets no channel; \
                     use pts"
                        .into(),
                ),
                Channel::Tty(dev) if self.env.filesystem && !dev.exists() => self.push(
                    Severity::Error,
                    "tty-missing",
                    at,
                    format!("host tty `{}` does not exist", dev.display()),
                ),
                Channel::Fd(n) if *n > 2 => self.push(
                    Severity::Note,
                    "fd-inherited",
                    at,
                    format!("fd:{n} must be a descriptor the kernel inherits open from its parent"),
                ),
                Channel::Xterm if self.env.var("DISPLAY").is_none() => self.push(
                    Severity::Warning,
                    "xterm-no-display",
                    at,
                    "the xterm channel needs $DISPLAY, which is not set".into(),
                ),
                Channel::Port(p) => self.push(
                    Severity::Note,
                    "port-waits",
                    at,
                    format!("port:{p} listens on every host address and the line waits until a telnet client connects"),
                ),
                _ => {}
            }
        }
    }

    fn mac(&mut self, at: Option<(usize, &Arg)>, unit: u64, mac: &crate::cmdline::Mac) {
        let random = format!(
            "the kernel picks a random MAC (`Choosing a random ethernet address for device eth{unit}`)"
        );
        match mac.bytes() {
            None => self.push(
                Severity::Warning,
                "mac-malformed",
                at,
                format!(
                    "`{mac}` is not a MAC: expected six hex bytes like fe:fd:c0:00:02:01; {random}"
                ),
            ),
            Some(b) if b[0] & 1 == 1 => self.push(
                Severity::Warning,
                "mac-multicast",
                at,
                format!("`{mac}` is a multicast address; {random}"),
            ),
            Some([0, 0, 0, 0, 0, 0]) => self.push(
                Severity::Warning,
                "mac-zero",
                at,
                format!("`{mac}` is all zeros; {random}"),
            ),
            Some(b) if b[0] & 2 == 0 => self.push(
                Severity::Warning,
                "mac-global",
                at,
                format!(
                    "`{mac}` is not locally administered (bit 1 of the first byte is clear): \
                     the kernel warns; use e.g. fe:… or 02:…"
                ),
            ),
            Some(_) => {}
        }
    }

    fn eth(&mut self, index: usize, arg: &Arg, unit: u64, transport: &Transport) {
        let at = Some((index, arg));
        let profile = &self.env.kernel;
        let name = transport.name();
        let presence = options::transport(name).map(|t| t.kernels().presence(profile));
        if !matches!(presence, Some(Presence::Present | Presence::Unknown)) {
            let known: Vec<&str> = options::transports()
                .iter()
                .filter(|t| !t.kernels().presence(profile).is_absent())
                .map(|t| t.name())
                .collect();
            let message = match presence {
                Some(p) => format!(
                    "transport `{name}` {}: the kernel ignores the option without a message \
                     and creates no eth{unit}",
                    p.reason(profile)
                ),
                None => format!(
                    "unknown transport `{name}`: the kernel ignores the option without a message \
                     and creates no eth{unit}; transports: {}",
                    known.join(", ")
                ),
            };
            self.push(Severity::Error, "eth-transport", at, message);
            return;
        }
        if let Some(first) = self.eth_units.insert(unit, index) {
            self.push(
                Severity::Error,
                "eth-duplicate",
                at,
                format!("eth{unit} is already given by argument {first}: the kernel refuses this one (`Device already configured`)"),
            );
        }
        if let Some(mac) = transport.mac() {
            self.mac(at, unit, mac);
        }
        match transport {
            Transport::Ethertap { dev: None, .. } => self.push(
                Severity::Error,
                "eth-missing-field",
                at,
                "ethertap needs a tap device: eth<n>=ethertap,<dev>[,<mac>,<gate>] (`ethertap_setup : Missing tap device name`)".into(),
            ),
            // ethertap_user.c runs the setuid uml_net helper, which needs the 2.4 ethertap
            // driver: on current hosts bringing the interface up fails with `etap_tramp
            // failed`, and the helper reconfigures the host device's address on the way.
            Transport::Ethertap { dev: Some(dev), .. } => self.push(
                Severity::Warning,
                "ethertap",
                at,
                format!(
                    "ethertap needs the host's long-gone ethertap driver: bringing eth{unit} up \
                     fails (`etap_tramp failed`), and the setuid uml_net helper rewrites the \
                     address of host device `{dev}` on the way; use eth{unit}=tuntap,{dev}"
                ),
            ),
            // tuntap_user.c opens /dev/net/tun with the name: a missing device is created
            // only with CAP_NET_ADMIN, otherwise the open fails when the interface comes up.
            Transport::Tuntap { dev: Some(dev), .. }
                if self.env.filesystem
                    && !Path::new("/sys/class/net").join(dev).exists() =>
            {
                self.push(
                    Severity::Warning,
                    "tuntap-missing",
                    at,
                    format!(
                        "host interface `{dev}` does not exist (no /sys/class/net/{dev}): \
                         without CAP_NET_ADMIN the kernel cannot create it and eth{unit} fails \
                         to come up; create it first (ip tuntap add {dev} mode tap user $USER)"
                    ),
                );
            }
            Transport::Ucast { remote: None, .. } => self.push(
                Severity::Error,
                "eth-missing-field",
                at,
                "ucast needs the peer's address: eth<n>=ucast,<mac>,<remote ip>[,<ports>]".into(),
            ),
            Transport::Daemon { sock_type, ctl, .. } => {
                if let Some(t) = sock_type.as_deref().filter(|t| *t != "unix") {
                    self.push(
                        Severity::Error,
                        "daemon-sock-type",
                        at,
                        format!("socket type `{t}` is not supported: the only working type is `unix`"),
                    );
                }
                let ctl = ctl.clone().unwrap_or_else(|| {
                    // CONFIG_UML_NET_DAEMON_DEFAULT_SOCK in Debian's build.
                    PathBuf::from("/var/run/uml-utilities/uml_switch.ctl")
                });
                self.socket_path(at, "daemon-path-too-long", "daemon control socket", &ctl);
                self.socket_exists(
                    at,
                    "daemon-missing",
                    &ctl,
                    "the kernel connects at boot, logs `daemon_open : control connect failed` and creates no device",
                );
            }
            _ => {}
        }
    }

    fn vec(&mut self, index: usize, arg: &Arg, unit: u64, pairs: &[(String, String)]) {
        let at = Some((index, arg));
        if let Some(first) = self.vec_units.insert(unit, index) {
            self.push(
                Severity::Error,
                "vec-duplicate",
                at,
                format!("vec{unit} is already given by argument {first}: the kernel refuses this one (`Device already configured`)"),
            );
        }
        if pairs.len() > MAX_VEC_PAIRS {
            self.push(
                Severity::Error,
                "vec-too-many",
                at,
                format!(
                    "{} key=value pairs: at most {MAX_VEC_PAIRS} are accepted (the kernel does not check and overruns its table)",
                    pairs.len()
                ),
            );
        }
        // The first occurrence of a key wins (uml_vector_fetch_arg, vector_user.c).
        let mut values: BTreeMap<&str, &str> = BTreeMap::new();
        for (k, v) in pairs {
            if values.contains_key(k.as_str()) {
                self.push(
                    Severity::Warning,
                    "vec-repeated-key",
                    at,
                    format!("key `{k}` is repeated: the first value wins"),
                );
            } else {
                values.insert(k, v);
            }
        }
        let Some(name) = values.get("transport") else {
            self.push(
                Severity::Error,
                "vec-no-transport",
                at,
                "no `transport=`: expected transport=tap|hybrid|raw|gre|l2tpv3|bess|fd".into(),
            );
            return;
        };
        // Transports are prefix-compared in table order (vector_kern.c, get_transport_options).
        let Some(spec) = options::vec_transports()
            .iter()
            .find(|t| name.starts_with(t.name()))
        else {
            self.push(
                Severity::Error,
                "vec-transport",
                at,
                format!("unknown vec transport `{name}`: expected tap, hybrid, raw, gre, l2tpv3, bess or fd"),
            );
            return;
        };
        if spec.name() != *name {
            self.push(
                Severity::Warning,
                "vec-transport-prefix",
                at,
                format!(
                    "transport `{name}` is read as `{}` (the kernel compares prefixes)",
                    spec.name()
                ),
            );
        }
        for k in values.keys() {
            let known = options::vec_common_keys().iter().any(|f| f.name() == *k)
                || spec.keys().iter().any(|f| f.name() == *k);
            if !known {
                self.push(
                    Severity::Warning,
                    "vec-unknown-key",
                    at,
                    format!(
                        "key `{k}` means nothing to the {} transport and is ignored",
                        spec.name()
                    ),
                );
            }
        }
        for r in spec.required() {
            if !values.contains_key(r) {
                self.push(
                    Severity::Error,
                    "vec-missing-key",
                    at,
                    format!("the {} transport needs `{r}=`", spec.name()),
                );
            }
        }
        for (a, b) in spec.pairs() {
            if values.contains_key(a) != values.contains_key(b) {
                self.push(
                    Severity::Error,
                    "vec-pair",
                    at,
                    format!("`{a}` and `{b}` must be given together"),
                );
            }
        }
        // vector_transports.c reads these with kstrtoint (base 0) into an unsigned int: a value
        // above INT_MAX (even the 0xffffffff of the kernel's howto) reads as missing, and for
        // l2tpv3's sessions the 7.2 kernel then crashes ("Kernel mode fault") when the
        // interface comes up. A negative number is taken as its two's complement.
        if matches!(spec.name(), "l2tpv3" | "gre") {
            for key in ["rx_session", "tx_session", "rx_key", "tx_key"] {
                let Some(v) = values.get(key) else { continue };
                let digits = v.strip_prefix('-').unwrap_or(v);
                let ok = crate::cmdline::strtoul0(digits)
                    .filter(|(_, used)| *used == digits.len())
                    .is_some_and(|(n, _)| n <= i32::MAX as u64);
                if !ok {
                    self.push(
                        Severity::Error,
                        "vec-int-range",
                        at,
                        format!(
                            "`{key}={v}` is not a number from -2147483648 to 2147483647: the kernel reads it with kstrtoint, takes it for missing{}",
                            if key.ends_with("session") {
                                ", and crashes when the interface comes up"
                            } else {
                                ""
                            }
                        ),
                    );
                }
            }
        }
        if let Some(mtu) = values.get("mtu") {
            let ok = crate::cmdline::strtoul0(mtu)
                .filter(|(_, used)| *used == mtu.len())
                .is_some_and(|(n, _)| (576..=65534).contains(&n));
            if !ok {
                self.push(
                    Severity::Warning,
                    "vec-mtu",
                    at,
                    format!("mtu `{mtu}` is outside 576-65534: the kernel uses 1500"),
                );
            }
        }
        if spec.name() == "bess" {
            for key in ["dst", "src"] {
                if let Some(p) = values.get(key) {
                    self.socket_path(at, "bess-path-too-long", "bess socket", Path::new(p));
                }
            }
        }
    }

    fn whole(&mut self, cmdline: &CommandLine, dashdash: Option<usize>) {
        let args = cmdline.args();
        let parsed = |i: &usize| dashdash.is_none_or(|d| *i < d);
        let has = |f: &dyn Fn(&Arg) -> bool| {
            args.iter()
                .enumerate()
                .any(|(i, a)| parsed(&i) && f(a.meaning()))
        };

        // Debian's CONFIG_CON_CHAN="x-terminal-emulator" is no channel type (stdio_console.c).
        if !has(&|a| matches!(a, Arg::Con { unit: None, .. })) {
            self.push(
                Severity::Warning,
                "con-default",
                None,
                "no `con=`: Debian's default channel for con1-15 (x-terminal-emulator) does not \
                 parse, so each logs `setup_one_line failed for device N : failed to parse \
                 channel pair`; pass con=null (and con0=fd:0,fd:1 for the console)"
                    .into(),
            );
        }
        if !has(&|a| matches!(a, Arg::Ubd { unit: 0, .. })) {
            // ubd0 defaults to the file root_fs (ubd_kern.c), whatever the root is.
            if has(&|a| matches!(a, Arg::Root(_))) {
                self.push(
                    Severity::Note,
                    "no-ubd0",
                    None,
                    "no ubd0: unless `root_fs` exists in the kernel's working directory, the \
                     kernel logs the harmless `Failed to initialize ubd device 0 :Couldn't \
                     determine size of device's file`"
                        .into(),
                );
            } else {
                self.push(
                    Severity::Warning,
                    "no-root",
                    None,
                    "no root= and no ubd0: the kernel boots from the file `root_fs` in its \
                     working directory (ubd0's default)"
                        .into(),
                );
            }
        }
        self.mconsole_path();
        self.memory_dir();
        self.hostfs_root(args);

        // The kernel command line (um_arch.c, add_arg): every word but the first umid= and
        // xterm=, joined by spaces, then root=98:0 and console=tty0 if absent.
        let mut line_len = 0usize;
        // set_umid_arg(): every umid= is removed until one is accepted (too-long ones are
        // refused); after that they stay. Verified on 6.1.176 via /proc/cmdline.
        let mut umid_set = false;
        for arg in args {
            let removed = match arg.meaning() {
                Arg::Umid(name) if !umid_set => {
                    umid_set = name.len() <= MAX_UMID;
                    true
                }
                other => other.spec().is_some_and(|spec| {
                    !spec.presence(&self.env.kernel).is_absent()
                        && spec.removed_on(&self.env.kernel) == Some(true)
                }),
            };
            if !removed {
                line_len += arg.to_string().len() + usize::from(line_len > 0);
            }
        }
        if !has(&|a| matches!(a, Arg::Root(_))) {
            line_len += " root=98:0".len();
        }
        if !args
            .iter()
            .any(|a| a.spec().is_some_and(|s| s.name() == "console="))
        {
            line_len += " console=tty0".len();
        }
        if line_len >= MAX_COMMAND_LINE {
            self.push(
                Severity::Error,
                "cmdline-too-long",
                None,
                format!(
                    "the kernel command line would be {line_len} bytes: the limit is {} \
                     (`add_arg: Too many command line arguments!`, then exit 1)",
                    MAX_COMMAND_LINE - 1
                ),
            );
        }

        // init/main.c, unknown_bootoption(): each table holds MAX_INIT_ARGS + 1 entries before
        // the next word panics. argv_init starts with "init", envp_init with HOME=/ and
        // TERM=linux, so a user gets 128 arguments but only 127 variables (the spec's "128 of
        // each" is off by one for the environment). Verified on 6.1.176: 128 arguments boot,
        // 128 variables panic with `Too many boot env vars at `e128=1'`.
        let mut init_argv = 0usize;
        let mut env_keys: Vec<String> = vec!["HOME".into(), "TERM".into()];
        for (i, arg) in args.iter().enumerate() {
            let word = arg.to_string();
            let slot = if !parsed(&i) {
                if word.contains('=') {
                    Some(InitSlot::Env)
                } else {
                    Some(InitSlot::Argv)
                }
            } else {
                let unclaimed = |w: &str| match Fate::of_unclaimed(w) {
                    Fate::Dropped => None,
                    Fate::Env => Some(InitSlot::Env),
                    Fate::Argv => Some(InitSlot::Argv),
                };
                match arg.meaning() {
                    Arg::Unknown(w) if w == "--" => None,
                    Arg::Unknown(w) => unclaimed(w),
                    other => match other.spec() {
                        Some(spec) if spec.presence(&self.env.kernel).is_absent() => spec
                            .absent_fate()
                            .map_or_else(|| unclaimed(&word), |_| None),
                        Some(spec) => spec.init_on(&self.env.kernel),
                        None => None,
                    },
                }
            };
            match slot {
                Some(InitSlot::Argv) => init_argv += 1,
                Some(InitSlot::Env) => {
                    let key = word.split_once('=').map_or(word.as_str(), |(k, _)| k);
                    if !env_keys.iter().any(|k| k == key) {
                        env_keys.push(key.to_owned());
                    }
                }
                None => {}
            }
        }
        let env_user = env_keys.len() - 2;
        for (what, kind, n, limit) in [
            ("arguments", "init", init_argv, MAX_INIT_SLOTS),
            ("environment variables", "env", env_user, MAX_INIT_SLOTS - 1),
        ] {
            if n > limit {
                self.push(
                    Severity::Error,
                    "init-too-many",
                    None,
                    format!(
                        "init would get {n} {what} from the command line: the limit is {limit}; \
                         the kernel panics (`Too many boot {kind} vars`)"
                    ),
                );
            }
        }
        self.duplicates(args, dashdash);
    }

    /// The generic `root=`, `rootfstype=` and `init=` handlers (`init/do_mounts.c`,
    /// `init/main.c`) each keep the last value: an earlier one is silently overridden.
    /// Verified on 7.2.12 (`root=/dev/ubda root=/dev/root rootfstype=ext4 rootfstype=hostfs`
    /// mounted the hostfs root; of two `init=` the second ran).
    fn duplicates(&mut self, args: &[Arg], dashdash: Option<usize>) {
        let mut last: HashMap<&'static str, usize> = HashMap::new();
        for (index, arg) in args.iter().enumerate() {
            if dashdash.is_some_and(|d| index >= d) {
                break;
            }
            if !matches!(
                arg.meaning(),
                Arg::Root(_) | Arg::RootFsType(_) | Arg::Init(_)
            ) {
                continue;
            }
            let Some(spec) = arg.spec() else { continue };
            if let Some(first) = last.insert(spec.name(), index) {
                self.push(
                    Severity::Warning,
                    "duplicate",
                    Some((index, arg)),
                    format!(
                        "`{}` is also given by argument {first}: the kernel uses the last one \
                         and ignores the earlier one",
                        spec.name()
                    ),
                );
            }
        }
    }

    /// With `rootfstype=hostfs`, `rootflags=` names a host directory under the `hostfs=` root.
    fn hostfs_root(&mut self, args: &[Arg]) {
        if !self.env.filesystem {
            return;
        }
        let mut hostfs = false;
        let mut flags = None;
        let mut prefix = String::new();
        for (i, arg) in args.iter().enumerate() {
            match arg.meaning() {
                Arg::RootFsType(t) => hostfs = t == "hostfs",
                Arg::RootFlags(dir) => flags = Some((i, arg, dir.clone())),
                Arg::Hostfs { root, .. } => prefix = root.display().to_string(),
                _ => {}
            }
        }
        if let (true, Some((i, arg, dir))) = (hostfs, flags) {
            let full = PathBuf::from(format!("{prefix}/{dir}"));
            if !full.is_dir() {
                self.push(
                    Severity::Error,
                    "hostfs-root-missing",
                    Some((i, arg)),
                    format!(
                        "the hostfs root `{}` is not a host directory",
                        full.display()
                    ),
                );
            }
        }
    }

    /// `<uml_dir><umid>/mconsole` must fit `sun_path` (mconsole_user.c, umid.c).
    fn mconsole_path(&mut self) {
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
    fn memory_dir(&mut self) {
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

    fn socket_path(&mut self, at: Option<(usize, &Arg)>, code: &'static str, what: &str, p: &Path) {
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

    fn socket_exists(
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
    fn cow(&mut self, at: Option<(usize, &Arg)>, file: &Path, given: Option<&Path>) {
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

    fn file_exists(&mut self, at: Option<(usize, &Arg)>, code: &'static str, p: &Path, what: &str) {
        if self.env.filesystem && !p.exists() {
            self.push(
                Severity::Error,
                code,
                at,
                format!("{what} `{}` does not exist", p.display()),
            );
        }
    }

    fn dir_exists(&mut self, at: Option<(usize, &Arg)>, code: &'static str, p: &Path) {
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
fn host_has_legacy_ptys() -> bool {
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
    use super::*;
    use crate::cmdline::{Transport, UbdFlags};

    fn launcher_cmdline() -> CommandLine {
        let mut c = CommandLine::new();
        c.push(Arg::Mem(256 << 20))
            .push(Arg::Umid("web1".into()))
            .push(Arg::UmlDir("/tmp/umlkit".into()))
            .push_hostfs_root("/")
            .push(Arg::Con {
                unit: None,
                channels: Channels::Both(Channel::Null),
            })
            .push(Arg::Con {
                unit: Some(0),
                channels: Channels::Pair(Channel::Fd(0), Channel::Fd(1)),
            })
            .push(Arg::Ubd {
                unit: 0,
                flags: UbdFlags::default(),
                file: Some("/srv/web1.cow".into()),
                backing: Some("/srv/base.img".into()),
                serial: None,
            })
            .push(Arg::Eth {
                unit: 0,
                transport: Transport::daemon("/tmp/sw.ctl"),
            })
            .push(Arg::MconsoleNotify("/tmp/umlkit/notify".into()));
        c
    }

    #[test]
    fn a_launcher_command_line_has_no_errors_or_warnings() {
        let report = check(&launcher_cmdline(), &CheckEnv::offline());
        assert_eq!(report.worst(), Some(Severity::Note), "{report:#?}");
        assert_eq!(
            report.with_code("reaches-init").count(),
            2,
            "mem= and uml_dir="
        );
    }

    #[test]
    fn builder_mistakes_are_caught_like_parsed_ones() {
        let mut c = launcher_cmdline();
        c.push(Arg::Ubd {
            unit: 0,
            flags: UbdFlags {
                no_cow: true,
                ..UbdFlags::default()
            },
            file: Some("/a".into()),
            backing: Some("/b".into()),
            serial: None,
        });
        let report = check(&c, &CheckEnv::offline());
        assert_eq!(report.with_code("ubd-duplicate").count(), 1);
        assert_eq!(report.with_code("ubd-raw-with-cow").count(), 1);
        assert!(report.has_errors());
        let parsed = check(&CommandLine::parse(&c.to_argv()), &CheckEnv::offline());
        assert_eq!(parsed, report);
    }

    #[test]
    fn built_values_the_kernel_would_split_are_errors() {
        let mut c = launcher_cmdline();
        c.push(Arg::Ubd {
            unit: 3,
            flags: UbdFlags::default(),
            file: Some("/srv/a:b.img".into()),
            backing: None,
            serial: None,
        })
        .push(Arg::Eth {
            unit: 1,
            transport: Transport::daemon("/tmp/a,b.ctl"),
        })
        .push(Arg::Init("/bin/sh -x".into()));
        let report = check(&c, &CheckEnv::offline());
        let ambiguous: Vec<_> = report.with_code("ambiguous").map(|f| f.index).collect();
        assert_eq!(ambiguous, [Some(11), Some(12)], "{report:#?}");
        assert_eq!(report.with_code("whitespace").count(), 1);
    }

    #[test]
    fn accepted_part_of_a_warned_word_is_still_checked() {
        let c = CommandLine::parse(&[
            "eth0=daemon,,unix,/tmp/nope.ctl,/tmp/data",
            "vec0:transport=hybrid,bare",
        ]);
        let mut env = CheckEnv::offline();
        env.filesystem = true;
        let report = check(&c, &env);
        assert_eq!(report.with_code("eth-ignored-fields").count(), 1);
        assert_eq!(report.with_code("daemon-missing").count(), 1);
        assert_eq!(report.with_code("vec-key-without-value").count(), 1);
        assert_eq!(report.with_code("vec-missing-key").count(), 1);
    }

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
