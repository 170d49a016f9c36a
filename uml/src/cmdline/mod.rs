//! A UML kernel argv as typed values, and back.
//!
//! [`CommandLine::parse`] turns the words after the kernel binary into [`Arg`]s;
//! [`CommandLine::to_argv`] renders them. Guarantee: rendering a parsed command line gives back
//! the input word for word, for every input, including unknown and invalid words
//! (property-tested and fuzzed). Valid options written the way umlkit writes them become typed
//! variants; valid options spelled differently (`mem=0x8000000`, `ubd010=…`, `ubd0=a:b`) become
//! [`Arg::Verbatim`], which keeps the text and the typed meaning; words the kernel would reject
//! become [`Arg::Invalid`] with the reason.
//!
//! Building an argv for the launcher:
//!
//! ```
//! use uml::cmdline::{Arg, CommandLine, Transport, UbdFlags};
//! let mut cmdline = CommandLine::new();
//! cmdline
//!     .push(Arg::Mem(256 << 20))
//!     .push(Arg::Umid("web1".into()))
//!     .push(Arg::Ubd {
//!         unit: 0,
//!         flags: UbdFlags::default(),
//!         file: Some("/srv/web1.cow".into()),
//!         backing: Some("/srv/base.img".into()),
//!         serial: None,
//!     })
//!     .push(Arg::Eth { unit: 0, transport: Transport::daemon("/tmp/sw.ctl") });
//! assert_eq!(
//!     cmdline.to_argv(),
//!     ["mem=256M", "umid=web1", "ubd0=/srv/web1.cow,/srv/base.img", "eth0=daemon,,unix,/tmp/sw.ctl"]
//! );
//! ```

use std::fmt;
use std::path::PathBuf;

use crate::options::{self, OptionSpec};

mod line;
mod net;
mod number;
mod parse;
mod ubd;

pub use line::{Channel, Channels};
pub use net::{Mac, Transport};
use number::Size;
pub(crate) use number::strtoul0;
pub use parse::ParseError;
use parse::parse_option;
pub(crate) use parse::{accepted_part, parsers};
pub use ubd::UbdFlags;

/// The highest ubd unit plus one (`MAX_DEV`, `ubd_kern.c`).
pub const UBD_UNITS: u64 = 16;
/// Number of `con<n>` lines (`MAX_TTYS`, `stdio_console.c`).
pub const CON_UNITS: u64 = 16;
/// Number of `ssl<n>` lines (`NR_PORTS`, `ssl.c`).
pub const SSL_UNITS: u64 = 64;
/// At most this many flag letters before `=` in a ubd option (`sizeof("rscdt=")` − 1).
pub const UBD_MAX_FLAGS: usize = 6;

/// A parsed kernel argv: one [`Arg`] per word, in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CommandLine {
    args: Vec<Arg>,
}

impl CommandLine {
    /// An empty command line.
    pub fn new() -> Self {
        CommandLine::default()
    }

    /// Parse the words after the kernel binary. Never fails: what the kernel would not accept
    /// is kept as [`Arg::Invalid`] or [`Arg::Unknown`].
    pub fn parse<S: AsRef<str>>(argv: &[S]) -> Self {
        CommandLine {
            args: argv.iter().map(|w| Arg::parse(w.as_ref())).collect(),
        }
    }

    /// Append an argument.
    pub fn push(&mut self, arg: Arg) -> &mut Self {
        self.args.push(arg);
        self
    }

    /// Append `root=/dev/root rootfstype=hostfs rootflags=<dir>`: the host directory `dir`
    /// (relative to a `hostfs=` root, if one is given) as the guest's `/`.
    pub fn push_hostfs_root(&mut self, dir: impl Into<String>) -> &mut Self {
        self.push(Arg::Root("/dev/root".into()))
            .push(Arg::RootFsType("hostfs".into()))
            .push(Arg::RootFlags(dir.into()))
    }

    /// The arguments in order.
    pub fn args(&self) -> &[Arg] {
        &self.args
    }

    /// The argv words to pass after the kernel binary.
    pub fn to_argv(&self) -> Vec<String> {
        self.args.iter().map(Arg::to_string).collect()
    }

    /// Number of words.
    pub fn len(&self) -> usize {
        self.args.len()
    }

    /// No words at all.
    pub fn is_empty(&self) -> bool {
        self.args.is_empty()
    }
}

impl FromIterator<Arg> for CommandLine {
    fn from_iter<I: IntoIterator<Item = Arg>>(iter: I) -> Self {
        CommandLine {
            args: iter.into_iter().collect(),
        }
    }
}

impl Extend<Arg> for CommandLine {
    fn extend<I: IntoIterator<Item = Arg>>(&mut self, iter: I) {
        self.args.extend(iter);
    }
}

/// One argv word.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    /// `mem=<size>`, in bytes; rendered with the largest exact K/M/G/T/P/E suffix.
    Mem(u64),
    /// `umid=<name>`.
    Umid(String),
    /// `uml_dir=<dir>`.
    UmlDir(PathBuf),
    /// `root=<device>`.
    Root(String),
    /// `rootfstype=<fs>`.
    RootFsType(String),
    /// `rootflags=<options>` (the host directory for a hostfs root).
    RootFlags(String),
    /// `init=<program>`.
    Init(String),
    /// `initrd=<file>`.
    Initrd(PathBuf),
    /// `hostfs=<root>[,<flag>…]`; the only flag the kernel knows is `append`.
    Hostfs { root: PathBuf, flags: Vec<String> },
    /// `ubd<unit><flags>=<file>[,<backing>][,<serial>]`. With `backing`, `file` is the COW file.
    Ubd {
        unit: u8,
        flags: UbdFlags,
        file: Option<PathBuf>,
        backing: Option<PathBuf>,
        serial: Option<String>,
    },
    /// `ubd=sync`: every ubd disk is opened O_SYNC.
    UbdSync,
    /// `con=<channels>` (`unit: None`: every console) or `con<unit>=<channels>`.
    Con {
        unit: Option<u64>,
        channels: Channels,
    },
    /// `ssl=<channels>` or `ssl<unit>=<channels>`.
    Ssl {
        unit: Option<u64>,
        channels: Channels,
    },
    /// `eth<unit>=<transport>,…`.
    Eth { unit: u64, transport: Transport },
    /// `vec<unit>:<key>=<value>,…`, pairs in order.
    Vec {
        unit: u64,
        pairs: Vec<(String, String)>,
    },
    /// `mconsole=notify:<socket>`.
    MconsoleNotify(PathBuf),
    /// `seccomp=on|auto|off` (kernels after 6.1).
    Seccomp(String),
    /// `virtio_uml.device=<socket>:<virtio id>[:<platform id>]`.
    VirtioDevice {
        socket: PathBuf,
        virtio_id: u32,
        platform_id: Option<u32>,
    },
    /// Any other option of the [`options`] table, kept as written (`noreboot`, `rw`,
    /// `con=null`'s cousins `quiet`, `xterm=…`, obsolete ones such as `mode=tt`).
    Known {
        spec: &'static OptionSpec,
        text: String,
    },
    /// A valid option written differently from how umlkit renders it. `arg` is its meaning.
    Verbatim { text: String, arg: Box<Arg> },
    /// A word an option's handler claims but rejects (or would misread).
    Invalid {
        text: String,
        spec: &'static OptionSpec,
        error: ParseError,
    },
    /// A word no option claims: the kernel passes it to init.
    Unknown(String),
}

impl Arg {
    /// Classify one argv word the way the kernel would.
    pub fn parse(text: &str) -> Arg {
        let Some(spec) = options::lookup(text) else {
            return Arg::Unknown(text.to_owned());
        };
        match parse_option(spec, text) {
            Ok(Some(arg)) => {
                if arg.to_string() == text {
                    arg
                } else {
                    Arg::Verbatim {
                        text: text.to_owned(),
                        arg: Box::new(arg),
                    }
                }
            }
            Ok(None) => Arg::Known {
                spec,
                text: text.to_owned(),
            },
            Err(error) => Arg::Invalid {
                text: text.to_owned(),
                spec,
                error,
            },
        }
    }

    /// A flag or untyped option such as `noreboot`, `rw`, `quiet` or `ssl-non-raw`, looked up in
    /// the option table ([`Arg::Unknown`] if no option claims it).
    pub fn word(text: &str) -> Arg {
        Arg::parse(text)
    }

    /// What the argument means: the inner argument of [`Arg::Verbatim`], otherwise itself.
    pub fn meaning(&self) -> &Arg {
        match self {
            Arg::Verbatim { arg, .. } => arg,
            other => other,
        }
    }

    /// The option table entry this argument belongs to, `None` for [`Arg::Unknown`].
    pub fn spec(&self) -> Option<&'static OptionSpec> {
        match self {
            Arg::Known { spec, .. } | Arg::Invalid { spec, .. } => Some(spec),
            Arg::Verbatim { arg, .. } => arg.spec(),
            Arg::Unknown(_) => None,
            // A typed argument belongs to the option that claims its rendered word, the way
            // the kernel would match it: no second table of names here.
            typed => options::lookup(&typed.to_string()),
        }
    }
}

/// Renders the argv word.
impl fmt::Display for Arg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arg::Mem(bytes) => write!(f, "mem={}", Size(*bytes)),
            Arg::Umid(s) => write!(f, "umid={s}"),
            Arg::UmlDir(p) => write!(f, "uml_dir={}", p.display()),
            Arg::Root(s) => write!(f, "root={s}"),
            Arg::RootFsType(s) => write!(f, "rootfstype={s}"),
            Arg::RootFlags(s) => write!(f, "rootflags={s}"),
            Arg::Init(s) => write!(f, "init={s}"),
            Arg::Initrd(p) => write!(f, "initrd={}", p.display()),
            Arg::Hostfs { root, flags } => {
                write!(f, "hostfs={}", root.display())?;
                for flag in flags {
                    write!(f, ",{flag}")?;
                }
                Ok(())
            }
            Arg::Ubd {
                unit,
                flags,
                file,
                backing,
                serial,
            } => {
                write!(f, "ubd{unit}{flags}=")?;
                if let Some(file) = file {
                    write!(f, "{}", file.display())?;
                }
                if backing.is_some() || serial.is_some() {
                    f.write_str(",")?;
                }
                if let Some(backing) = backing {
                    write!(f, "{}", backing.display())?;
                }
                if let Some(serial) = serial {
                    write!(f, ",{serial}")?;
                }
                Ok(())
            }
            Arg::UbdSync => f.write_str("ubd=sync"),
            Arg::Con { unit, channels } => line(f, "con", *unit, channels),
            Arg::Ssl { unit, channels } => line(f, "ssl", *unit, channels),
            Arg::Eth { unit, transport } => write!(f, "eth{unit}={transport}"),
            Arg::Vec { unit, pairs } => {
                write!(f, "vec{unit}:")?;
                for (i, (k, v)) in pairs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{k}={v}")?;
                }
                Ok(())
            }
            Arg::MconsoleNotify(p) => write!(f, "mconsole=notify:{}", p.display()),
            Arg::Seccomp(mode) => write!(f, "seccomp={mode}"),
            Arg::VirtioDevice {
                socket,
                virtio_id,
                platform_id,
            } => {
                write!(f, "virtio_uml.device={}:{virtio_id}", socket.display())?;
                if let Some(p) = platform_id {
                    write!(f, ":{p}")?;
                }
                Ok(())
            }
            Arg::Known { text, .. }
            | Arg::Verbatim { text, .. }
            | Arg::Invalid { text, .. }
            | Arg::Unknown(text) => f.write_str(text),
        }
    }
}

fn line(f: &mut fmt::Formatter<'_>, dev: &str, unit: Option<u64>, chans: &Channels) -> fmt::Result {
    match unit {
        Some(n) => write!(f, "{dev}{n}={chans}"),
        None => write!(f, "{dev}={chans}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(super) fn one(word: &str) -> Arg {
        let cmdline = CommandLine::parse(&[word]);
        assert_eq!(cmdline.to_argv(), [word], "round trip of {word:?}");
        cmdline.args()[0].clone()
    }

    #[test]
    fn other_options() {
        assert_eq!(
            one("mconsole=notify:/tmp/n"),
            Arg::MconsoleNotify("/tmp/n".into())
        );
        assert!(matches!(one("mconsole=foo"), Arg::Invalid { .. }));
        assert_eq!(
            one("virtio_uml.device=/tmp/v:1:2"),
            Arg::VirtioDevice {
                socket: "/tmp/v".into(),
                virtio_id: 1,
                platform_id: Some(2)
            }
        );
        assert!(matches!(
            one("virtio_uml.device=/tmp/v"),
            Arg::Invalid { .. }
        ));
        assert_eq!(one("umid=web"), Arg::Umid("web".into()));
        assert!(matches!(one("hostfs=/srv,append"), Arg::Hostfs { .. }));
        assert!(matches!(one("noreboot"), Arg::Known { .. }));
        assert!(matches!(one("mode=tt"), Arg::Known { .. }));
        assert_eq!(one("hello"), Arg::Unknown("hello".into()));
        assert_eq!(one(""), Arg::Unknown("".into()));
    }

    #[test]
    fn hostfs_root_builder() {
        let mut c = CommandLine::new();
        c.push_hostfs_root("/srv/root").push(Arg::word("rw"));
        assert_eq!(
            c.to_argv(),
            [
                "root=/dev/root",
                "rootfstype=hostfs",
                "rootflags=/srv/root",
                "rw"
            ]
        );
        assert_eq!(CommandLine::parse(&c.to_argv()), c);
    }

    fn word() -> impl Strategy<Value = String> {
        let prefix = prop::sample::select(vec![
            "",
            "ubd",
            "udb",
            "con",
            "ssl",
            "eth",
            "vec",
            "mem=",
            "mconsole=",
            "umid=",
            "virtio_uml.device=",
            "hostfs=",
            "ssl-non-raw",
            "console=",
        ]);
        (prefix, "[0-9a-z=:,./_-]{0,24}|\\PC{0,12}").prop_map(|(p, s)| format!("{p}{s}"))
    }

    fn valid_arg() -> impl Strategy<Value = Arg> {
        let path = "/[a-z0-9_]{1,12}";
        let mac = prop::option::of(any::<[u8; 6]>().prop_map(Mac::new));
        prop_oneof![
            any::<u64>().prop_map(Arg::Mem),
            "[a-z0-9]{1,20}".prop_map(Arg::Umid),
            (
                0u8..16,
                any::<[bool; 5]>(),
                prop::option::of(path),
                prop::option::of(path),
                prop::option::of("[A-Z0-9]{1,8}")
            )
                .prop_map(|(unit, f, file, backing, serial)| Arg::Ubd {
                    unit,
                    flags: UbdFlags {
                        read_only: f[0],
                        sync: f[1],
                        no_cow: f[2],
                        shared: f[3],
                        no_trim: f[4]
                    },
                    file: file.map(PathBuf::from),
                    backing: backing.map(PathBuf::from),
                    serial,
                }),
            (prop::option::of(0u64..16), any::<u32>(), any::<u16>()).prop_map(|(unit, fd, p)| {
                Arg::Con {
                    unit,
                    channels: Channels::Pair(Channel::Fd(fd), Channel::Port(p)),
                }
            }),
            (0u64..64, path).prop_map(|(u, p)| Arg::Ssl {
                unit: Some(u),
                channels: Channels::Both(Channel::Tty(p.into()))
            }),
            (any::<u64>(), mac.clone(), prop::option::of(path)).prop_map(|(unit, mac, ctl)| {
                Arg::Eth {
                    unit,
                    transport: Transport::Daemon {
                        mac,
                        sock_type: Some("unix".into()),
                        ctl: ctl.map(PathBuf::from),
                    },
                }
            }),
            (any::<u32>(), mac, prop::option::of("[0-9.]{1,15}")).prop_map(|(unit, mac, gate)| {
                Arg::Eth {
                    unit: unit.into(),
                    transport: Transport::Tuntap {
                        dev: Some("tap0".into()),
                        mac,
                        gate,
                    },
                }
            }),
            (
                any::<u32>(),
                prop::collection::vec(("[a-z_]{1,8}", "[a-z0-9]{0,8}"), 0..5)
            )
                .prop_map(|(unit, pairs)| Arg::Vec {
                    unit: unit.into(),
                    pairs
                }),
            path.prop_map(|p| Arg::MconsoleNotify(p.into())),
        ]
    }

    proptest! {
        #[test]
        fn any_argv_round_trips(argv in prop::collection::vec(word(), 0..8)) {
            prop_assert_eq!(CommandLine::parse(&argv).to_argv(), argv);
        }

        #[test]
        fn built_args_parse_back_to_themselves(args in prop::collection::vec(valid_arg(), 0..8)) {
            let cmdline: CommandLine = args.into_iter().collect();
            let argv = cmdline.to_argv();
            let parsed = CommandLine::parse(&argv);
            prop_assert_eq!(parsed.to_argv(), argv);
            prop_assert_eq!(parsed, cmdline);
        }
    }
}
