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
use std::path::PathBuf;

use serde::Serialize;

use crate::cmdline::{Arg, CommandLine};
use crate::kernel::{self, Profile, Version};
use crate::options::OptionSpec;

mod device;
mod host;
mod whole;
mod word;

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
        let kernel = kernel::resolve(None)
            .and_then(|path| Profile::read(&path))
            .unwrap_or_else(|err| {
                tracing::debug!("{err}; checking against Debian's 6.1");
                Profile::assumed(Version::new(6, 1, 0))
            });
        CheckEnv::from_process_for(kernel)
    }

    /// [`CheckEnv::from_process`] for a kernel the caller has already profiled: the one it
    /// will run.
    pub fn from_process_for(kernel: Profile) -> CheckEnv {
        let vars = ["HOME", "TMPDIR", "TMP", "TEMP", "DISPLAY"]
            .iter()
            .filter_map(|k| std::env::var(k).ok().map(|v| ((*k).to_owned(), v)))
            .collect();
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmdline::{Channel, Channels, Transport, UbdFlags};

    pub(super) fn launcher_cmdline() -> CommandLine {
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
}
