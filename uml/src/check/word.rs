//! One argv word against the option table: does this kernel have the option, where does the
//! word end up, does a typed argument read back as itself, and what an unknown or invalid word
//! was probably meant to be.

use std::path::Path;

use super::{Checker, Severity};
use crate::cmdline::{Arg, ParseError};
use crate::options::{self, Fate, InitSlot, OptionSpec, Presence, Status};

impl Checker<'_> {
    pub(super) fn arg(&mut self, index: usize, arg: &Arg) {
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
    pub(super) fn rendering(&mut self, index: usize, arg: &Arg) {
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
    pub(super) fn status(&mut self, index: usize, arg: &Arg, spec: &'static OptionSpec) -> bool {
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
    pub(super) fn invalid(
        &mut self,
        index: usize,
        arg: &Arg,
        spec: &OptionSpec,
        error: &ParseError,
    ) {
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
            ParseError::Number(_) => (Severity::Error, "number"),
            ParseError::NumberTail { .. } => (Severity::Warning, "number-tail"),
        };
        let message = match error {
            ParseError::Number(_) | ParseError::NumberTail { .. } => {
                let (severity, message) =
                    number_verdict(spec.name(), error, self.env.kernel.version.major);
                return self.push(severity, code, at, message);
            }
            _ => error.to_string(),
        };
        self.push(severity, code, at, message);
    }

    pub(super) fn unknown(&mut self, index: usize, arg: &Arg, word: &str) {
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

    pub(super) fn known(&mut self, index: usize, arg: &Arg, spec: &OptionSpec, text: &str) {
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
}

/// What the kernel (of major version `major`) makes of the value of number option `name`
/// that is no number, or a number with more after it, as each handler reads it:
/// `lpj=` with `kstrtoul` on 7.2 (the whole value or nothing; refused, the word goes to init)
/// and `simple_strtoul` on 6.1 (init/calibrate.c, checked by booting both); `loglevel=` with
/// `get_option` (init/main.c); `stderr=` with `simple_strtoul` (stderr_console.c); `ncpus=`
/// with `kstrtoint` in base 10 (smp.c); `time-travel-start=` with `kstrtoull` (time.c).
fn number_verdict(name: &str, error: &ParseError, major: u32) -> (Severity, String) {
    let (text, tail) = match error {
        ParseError::NumberTail { text, .. } => (text, true),
        ParseError::Number(text) => (text, false),
        other => return (Severity::Error, other.to_string()),
    };
    let not_a_number = format!("`{text}` is not a number");
    let refused = match name {
        "lpj=" if major >= 7 => Some(
            "the kernel refuses it and passes the word to init's environment; unless an \
             earlier lpj= set it, it calibrates its delay loop at boot (0.1-0.2 s)",
        ),
        "ncpus=" => {
            Some("the kernel refuses it (`Couldn't parse`, base 10 only) and starts one CPU")
        }
        "time-travel-start" => {
            Some("the kernel ignores it: the guest's clock starts at the host's time")
        }
        _ => None,
    };
    match (refused, tail) {
        (Some(outcome), _) => (Severity::Error, format!("{not_a_number}: {outcome}")),
        // The handler reads the leading number and stops: the message says which.
        (None, true) => (Severity::Warning, error.to_string()),
        (None, false) => {
            let outcome = match name {
                "lpj=" => "the kernel reads 0 and calibrates its delay loop at boot (0.1-0.2 s)",
                "loglevel=" => {
                    "the kernel refuses it (`Malformed early option 'loglevel'`) and keeps its level"
                }
                "stderr=" => "the kernel reads 0: no early console on stderr",
                _ => "the kernel reads no number from it",
            };
            (
                Severity::Error,
                format!(
                    "{not_a_number} (expected a decimal, 0x hex or 0 octal integer): {outcome}"
                ),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::launcher_cmdline;
    use crate::check::{CheckEnv, check};
    use crate::cmdline::{Arg, CommandLine, Transport, UbdFlags};

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
}
