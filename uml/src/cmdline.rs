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

/// ubd flag letters. Rendered in the order `r s d c t`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UbdFlags {
    /// `r`: read-only.
    pub read_only: bool,
    /// `s`: O_SYNC.
    pub sync: bool,
    /// `d`: no COW detection; the file is used raw.
    pub no_cow: bool,
    /// `c`: shared; no host `fcntl` lock.
    pub shared: bool,
    /// `t`: no TRIM/discard.
    pub no_trim: bool,
}

impl fmt::Display for UbdFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (on, c) in [
            (self.read_only, "r"),
            (self.sync, "s"),
            (self.no_cow, "d"),
            (self.shared, "c"),
            (self.no_trim, "t"),
        ] {
            if on {
                f.write_str(c)?;
            }
        }
        Ok(())
    }
}

/// The channels of a console or serial line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Channels {
    /// `none`: the line is not configured.
    None,
    /// One channel for input and output.
    Both(Channel),
    /// `<in>,<out>`.
    Pair(Channel, Channel),
}

impl fmt::Display for Channels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Channels::None => f.write_str("none"),
            Channels::Both(c) => write!(f, "{c}"),
            Channels::Pair(i, o) => write!(f, "{i},{o}"),
        }
    }
}

/// One channel (`chan_kern.c`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Channel {
    /// `fd:<n>`.
    Fd(u32),
    /// `null`.
    Null,
    /// `port:<tcp port>`.
    Port(u16),
    /// `pty`.
    Pty,
    /// `pts`.
    Pts,
    /// `tty:<host device>`.
    Tty(PathBuf),
    /// `xterm`.
    Xterm,
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Channel::Fd(n) => write!(f, "fd:{n}"),
            Channel::Null => f.write_str("null"),
            Channel::Port(p) => write!(f, "port:{p}"),
            Channel::Pty => f.write_str("pty"),
            Channel::Pts => f.write_str("pts"),
            Channel::Tty(p) => write!(f, "tty:{}", p.display()),
            Channel::Xterm => f.write_str("xterm"),
        }
    }
}

/// A MAC address field, kept as written: the kernel does not reject a bad one but picks a
/// random address, so it is checked ([`Mac::bytes`]) rather than refused while parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mac(String);

impl Mac {
    /// The usual `xx:xx:xx:xx:xx:xx` form.
    pub fn new(bytes: [u8; 6]) -> Mac {
        let [a, b, c, d, e, g] = bytes;
        Mac(format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}"))
    }

    /// Text as it appears on the command line (not checked).
    pub fn from_text(text: impl Into<String>) -> Mac {
        Mac(text.into())
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The six bytes as the kernel reads them (`setup_etheraddr`, `net_kern.c`: six base-16
    /// numbers separated by `:`), or `None` if it cannot.
    pub fn bytes(&self) -> Option<[u8; 6]> {
        let mut out = [0u8; 6];
        let mut parts = self.0.split(':');
        for byte in &mut out {
            let part = parts.next()?;
            if part.is_empty() || part.len() > 2 || !part.bytes().all(|c| c.is_ascii_hexdigit()) {
                return None;
            }
            *byte = u8::from_str_radix(part, 16).ok()?;
        }
        parts.next().is_none().then_some(out)
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An `eth` transport with its positional fields. `None` is an empty field (the kernel's
/// default); trailing empty fields are not rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// `ethertap,<dev>,<mac>,<gate>`.
    Ethertap {
        dev: Option<String>,
        mac: Option<Mac>,
        gate: Option<String>,
    },
    /// `tuntap,<dev>,<mac>,<gate>`.
    Tuntap {
        dev: Option<String>,
        mac: Option<Mac>,
        gate: Option<String>,
    },
    /// `daemon,<mac>,<sock type>,<ctl socket>`.
    Daemon {
        mac: Option<Mac>,
        sock_type: Option<String>,
        ctl: Option<PathBuf>,
    },
    /// `mcast,<mac>,<group>,<port>,<ttl>`.
    Mcast {
        mac: Option<Mac>,
        group: Option<String>,
        port: Option<String>,
        ttl: Option<String>,
    },
    /// `ucast,<mac>,<remote>,<listen port>,<remote port>`.
    Ucast {
        mac: Option<Mac>,
        remote: Option<String>,
        listen_port: Option<String>,
        remote_port: Option<String>,
    },
    /// `slirp,<mac>,<program>[,<arg>…]`.
    Slirp { mac: Option<Mac>, argv: Vec<String> },
    /// `slip,<gate>`.
    Slip { gate: Option<String> },
    /// `vde,<switch>,<mac>,<port>,<group>,<mode>,<description>`.
    Vde {
        switch: Option<PathBuf>,
        mac: Option<Mac>,
        port: Option<String>,
        group: Option<String>,
        mode: Option<String>,
        description: Option<String>,
    },
    /// A transport the kernel does not have (a typo, or `pcap`, which Debian's 6.1 lacks):
    /// the kernel ignores the whole option without a message.
    Other { name: String, fields: Vec<String> },
}

impl Transport {
    /// `daemon,,unix,<ctl>`: a switch at control socket `ctl` with a random MAC.
    pub fn daemon(ctl: impl Into<PathBuf>) -> Transport {
        Transport::Daemon {
            mac: None,
            sock_type: Some("unix".into()),
            ctl: Some(ctl.into()),
        }
    }

    /// The transport name.
    pub fn name(&self) -> &str {
        match self {
            Transport::Ethertap { .. } => "ethertap",
            Transport::Tuntap { .. } => "tuntap",
            Transport::Daemon { .. } => "daemon",
            Transport::Mcast { .. } => "mcast",
            Transport::Ucast { .. } => "ucast",
            Transport::Slirp { .. } => "slirp",
            Transport::Slip { .. } => "slip",
            Transport::Vde { .. } => "vde",
            Transport::Other { name, .. } => name,
        }
    }

    /// The MAC field, if the transport has one and it is not empty.
    pub fn mac(&self) -> Option<&Mac> {
        match self {
            Transport::Ethertap { mac, .. }
            | Transport::Tuntap { mac, .. }
            | Transport::Daemon { mac, .. }
            | Transport::Mcast { mac, .. }
            | Transport::Ucast { mac, .. }
            | Transport::Slirp { mac, .. }
            | Transport::Vde { mac, .. } => mac.as_ref(),
            Transport::Slip { .. } | Transport::Other { .. } => None,
        }
    }

    fn fields(&self) -> Vec<Option<String>> {
        fn s(v: &Option<String>) -> Option<String> {
            v.clone()
        }
        fn m(v: &Option<Mac>) -> Option<String> {
            v.as_ref().map(|m| m.0.clone())
        }
        fn p(v: &Option<PathBuf>) -> Option<String> {
            v.as_ref().map(|p| p.display().to_string())
        }
        match self {
            Transport::Ethertap { dev, mac, gate } | Transport::Tuntap { dev, mac, gate } => {
                vec![s(dev), m(mac), s(gate)]
            }
            Transport::Daemon {
                mac,
                sock_type,
                ctl,
            } => vec![m(mac), s(sock_type), p(ctl)],
            Transport::Mcast {
                mac,
                group,
                port,
                ttl,
            } => vec![m(mac), s(group), s(port), s(ttl)],
            Transport::Ucast {
                mac,
                remote,
                listen_port,
                remote_port,
            } => vec![m(mac), s(remote), s(listen_port), s(remote_port)],
            Transport::Slirp { mac, argv } => std::iter::once(m(mac))
                .chain(argv.iter().map(|a| Some(a.clone())))
                .collect(),
            Transport::Slip { gate } => vec![s(gate)],
            Transport::Vde {
                switch,
                mac,
                port,
                group,
                mode,
                description,
            } => vec![
                p(switch),
                m(mac),
                s(port),
                s(group),
                s(mode),
                s(description),
            ],
            Transport::Other { fields, .. } => fields.iter().map(|f| Some(f.clone())).collect(),
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())?;
        let fields = self.fields();
        let keep = if let Transport::Slirp { mac, argv } = self {
            if argv.is_empty() {
                usize::from(mac.is_some())
            } else {
                fields.len()
            }
        } else if matches!(self, Transport::Other { .. }) {
            fields.len()
        } else {
            fields
                .iter()
                .rposition(Option::is_some)
                .map_or(0, |i| i + 1)
        };
        for field in fields.iter().take(keep) {
            write!(f, ",{}", field.as_deref().unwrap_or(""))?;
        }
        Ok(())
    }
}

/// A size as `mem=` writes it: the largest exact binary suffix.
struct Size(u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SUFFIXES: [(u32, char); 6] = [
            (60, 'E'),
            (50, 'P'),
            (40, 'T'),
            (30, 'G'),
            (20, 'M'),
            (10, 'K'),
        ];
        if self.0 != 0 {
            for (shift, suffix) in SUFFIXES {
                if self.0.trailing_zeros() >= shift {
                    return write!(f, "{}{suffix}", self.0 >> shift);
                }
            }
        }
        write!(f, "{}", self.0)
    }
}

/// Why an option's handler rejects a word. Messages name the bad part and what is accepted;
/// where the kernel has its own message it is quoted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error(
        "`{0}` is not a size: expected a number (decimal, 0x hex or 0 octal) with an optional K, M, G, T, P or E suffix"
    )]
    Size(String),
    #[error(
        "`{0}` is not a ubd unit: expected a number 0-15 or a letter a-p (`Couldn't parse device number`)"
    )]
    UbdUnit(String),
    #[error("ubd unit {0} is out of range: units are 0-15 or a-p (`Device number out of range`)")]
    UbdUnitRange(u64),
    #[error("`{0}` is not a ubd flag: expected `=` or one of r, s, d, c, t")]
    UbdFlag(char),
    #[error("{0} ubd flags given: at most 6 are accepted (`Too many flags specified`)")]
    UbdTooManyFlags(usize),
    #[error("expected `=` after the ubd unit and flags in `ubd{0}`: ubd<n><flags>=<file>")]
    UbdEquals(String),
    #[error(
        "`ubd={0}` is not accepted: without a unit only `ubd=sync` exists (`fake major not supported any more`)"
    )]
    UbdFakeMajor(String),
    #[error(
        "`{text}` is not a {device} number: expected {device}=<channels> or {device}<n>=<channels> (`Couldn't parse device number`)"
    )]
    LineUnit { device: &'static str, text: String },
    #[error(
        "{device}{unit} is out of range: {device} lines are 0-{max} (`Device number out of range`)"
    )]
    LineUnitRange {
        device: &'static str,
        unit: u64,
        max: u64,
    },
    #[error(
        "`{text}` is not a channel: expected fd:<n>, null, port:<tcp port>, pty, pts, tty:<device>, xterm or none{hint}"
    )]
    Channel { text: String, hint: String },
    #[error("`{0}` has no device number: expected eth<n>=<transport>,… (`Bad device number`)")]
    EthUnit(String),
    #[error("expected `=` after the device number in `{0}` (`Expected '=' after device number`)")]
    EthEquals(String),
    #[error(
        "the {transport} transport takes at most {max} fields, {given} given (`Extra garbage on specification`)"
    )]
    ExtraFields {
        transport: &'static str,
        max: usize,
        given: usize,
    },
    #[error(
        "the {transport} transport takes at most {max} fields; the kernel ignores the other {ignored} with a warning"
    )]
    IgnoredFields {
        transport: &'static str,
        max: usize,
        ignored: usize,
    },
    #[error(
        "expected `:` after the vec device number in `{0}` (`Expected ':' after device number`)"
    )]
    VecColon(String),
    #[error("`{0}` is not a vec device number: expected an unsigned number (`Bad device number`)")]
    VecUnit(String),
    #[error("vec option `{0}` has no `=`: the kernel drops it silently; expected <key>=<value>")]
    VecKeyWithoutValue(String),
    #[error(
        "vec option `{0}` has a second `=`: expected <key>=<value> (`vector_setup - Couldn't parse`)"
    )]
    VecDoubleEquals(String),
    #[error(
        "`mconsole={0}` is not accepted: the only form is mconsole=notify:<socket> (`mconsole_setup : Unknown option`)"
    )]
    Mconsole(String),
    #[error(
        "`seccomp={0}` is not accepted: expected on, auto or off; the kernel stops at start (`Invalid seccomp option`)"
    )]
    Seccomp(String),
    #[error(
        "`{0}` is not a virtio device: expected <socket>:<virtio id>[:<platform id>] with decimal ids"
    )]
    Virtio(String),
}

/// The part of a word the kernel goes on to use when it accepts the word with a warning: a
/// `vec` key without `=` is dropped, `daemon`/`vde` fields past the last are ignored.
pub(crate) fn accepted_part(text: &str, error: &ParseError) -> Option<Arg> {
    let rebuilt = match error {
        ParseError::VecKeyWithoutValue(_) => {
            let (head, spec) = text.split_once(':')?;
            let kept: Vec<&str> = spec.split(',').filter(|p| p.contains('=')).collect();
            format!("{head}:{}", kept.join(","))
        }
        ParseError::IgnoredFields { max, .. } => {
            let (head, spec) = text.split_once('=')?;
            let kept: Vec<&str> = spec.split(',').take(max + 1).collect();
            format!("{head}={}", kept.join(","))
        }
        _ => return None,
    };
    match Arg::parse(&rebuilt).meaning() {
        Arg::Invalid { .. } => None,
        arg => Some(arg.clone()),
    }
}

fn parse_option(spec: &'static OptionSpec, text: &str) -> Result<Option<Arg>, ParseError> {
    let rest = text.get(spec.name().len()..).unwrap_or("");
    spec.parser().map(|parse| parse(rest)).transpose()
}

/// The typed parsers the option table points at ([`OptionSpec::parser`]): each gets the text
/// after the option's name.
pub(crate) mod parsers {
    use super::{Arg, CON_UNITS, ParseError, SSL_UNITS};

    pub fn mem(rest: &str) -> Result<Arg, ParseError> {
        super::parse_size(rest).map(Arg::Mem)
    }
    pub fn umid(rest: &str) -> Result<Arg, ParseError> {
        Ok(Arg::Umid(rest.into()))
    }
    pub fn uml_dir(rest: &str) -> Result<Arg, ParseError> {
        Ok(Arg::UmlDir(rest.into()))
    }
    pub fn root(rest: &str) -> Result<Arg, ParseError> {
        Ok(Arg::Root(rest.into()))
    }
    pub fn rootfstype(rest: &str) -> Result<Arg, ParseError> {
        Ok(Arg::RootFsType(rest.into()))
    }
    pub fn rootflags(rest: &str) -> Result<Arg, ParseError> {
        Ok(Arg::RootFlags(rest.into()))
    }
    pub fn init(rest: &str) -> Result<Arg, ParseError> {
        Ok(Arg::Init(rest.into()))
    }
    pub fn initrd(rest: &str) -> Result<Arg, ParseError> {
        Ok(Arg::Initrd(rest.into()))
    }
    pub fn hostfs(rest: &str) -> Result<Arg, ParseError> {
        let mut parts = rest.split(',');
        let root = parts.next().unwrap_or("").into();
        Ok(Arg::Hostfs {
            root,
            flags: parts.map(str::to_owned).collect(),
        })
    }
    pub fn ubd(rest: &str) -> Result<Arg, ParseError> {
        super::parse_ubd(rest)
    }
    pub fn con(rest: &str) -> Result<Arg, ParseError> {
        let (unit, channels) = super::parse_line("con", CON_UNITS, rest)?;
        Ok(Arg::Con { unit, channels })
    }
    pub fn ssl(rest: &str) -> Result<Arg, ParseError> {
        let (unit, channels) = super::parse_line("ssl", SSL_UNITS, rest)?;
        Ok(Arg::Ssl { unit, channels })
    }
    pub fn eth(rest: &str) -> Result<Arg, ParseError> {
        super::parse_eth(rest)
    }
    pub fn vec(rest: &str) -> Result<Arg, ParseError> {
        super::parse_vec(rest)
    }
    pub fn mconsole(rest: &str) -> Result<Arg, ParseError> {
        match rest.strip_prefix("notify:") {
            Some(path) => Ok(Arg::MconsoleNotify(path.into())),
            None => Err(ParseError::Mconsole(rest.into())),
        }
    }
    pub fn virtio(rest: &str) -> Result<Arg, ParseError> {
        super::parse_virtio(rest)
    }
    /// `uml_seccomp_config()`, `os-Linux/start_up.c`: exactly `on`, `auto` or `off`; anything
    /// else is fatal at start.
    pub fn seccomp(rest: &str) -> Result<Arg, ParseError> {
        match rest {
            "on" | "auto" | "off" => Ok(Arg::Seccomp(rest.into())),
            _ => Err(ParseError::Seccomp(rest.into())),
        }
    }
}

/// `simple_strtoull(s, &end, 0)` (`lib/vsprintf.c`): the value (saturated) and the bytes used,
/// or `None` when no digit was read.
pub(crate) fn strtoul0(s: &str) -> Option<(u64, usize)> {
    let b = s.as_bytes();
    let (radix, start) = match b {
        [b'0', b'x' | b'X', c, ..] if c.is_ascii_hexdigit() => (16, 2),
        [b'0', ..] => (8, 0),
        _ => (10, 0),
    };
    let mut value: u64 = 0;
    let mut used = start;
    for &c in b.get(start..).unwrap_or(&[]) {
        let Some(d) = (c as char).to_digit(radix) else {
            break;
        };
        value = value.saturating_mul(radix.into()).saturating_add(d.into());
        used += 1;
    }
    (used > start).then_some((value, used))
}

/// `memparse` (`lib/cmdline.c`): base-0 number, optional suffix, trailing junk ignored.
pub(crate) fn parse_size(s: &str) -> Result<u64, ParseError> {
    let (value, used) = strtoul0(s).ok_or_else(|| ParseError::Size(s.into()))?;
    let shift = match s.as_bytes().get(used).map(u8::to_ascii_uppercase) {
        Some(b'E') => 60,
        Some(b'P') => 50,
        Some(b'T') => 40,
        Some(b'G') => 30,
        Some(b'M') => 20,
        Some(b'K') => 10,
        _ => 0,
    };
    // `ret <<= 10` per step in the kernel: high bits are lost, never an error.
    Ok(value << shift)
}

fn parse_ubd(rest: &str) -> Result<Arg, ParseError> {
    if let Some(value) = rest.strip_prefix('=') {
        return if value == "sync" {
            Ok(Arg::UbdSync)
        } else {
            Err(ParseError::UbdFakeMajor(value.into()))
        };
    }
    // parse_unit(), ubd_kern.c: a base-0 number or one letter a-z.
    let (unit, used) = match rest.as_bytes().first() {
        Some(c) if c.is_ascii_digit() => {
            strtoul0(rest).ok_or_else(|| ParseError::UbdUnit(rest.into()))?
        }
        Some(c @ b'a'..=b'z') => (u64::from(c - b'a'), 1),
        _ => return Err(ParseError::UbdUnit(rest.into())),
    };
    if unit >= UBD_UNITS {
        return Err(ParseError::UbdUnitRange(unit));
    }
    let mut flags = UbdFlags::default();
    let mut count = 0;
    let after = rest.get(used..).unwrap_or("");
    let mut value = None;
    for (i, c) in after.char_indices() {
        match c {
            '=' => {
                value = after.get(i + 1..);
                break;
            }
            'r' => flags.read_only = true,
            's' => flags.sync = true,
            'd' => flags.no_cow = true,
            'c' => flags.shared = true,
            't' => flags.no_trim = true,
            other => {
                if count > UBD_MAX_FLAGS {
                    return Err(ParseError::UbdTooManyFlags(count));
                }
                return Err(ParseError::UbdFlag(other));
            }
        }
        count += 1;
    }
    if count > UBD_MAX_FLAGS {
        return Err(ParseError::UbdTooManyFlags(count));
    }
    let Some(value) = value else {
        return Err(ParseError::UbdEquals(rest.into()));
    };
    // strsep(&str, ",:") three times; anything after the third field is ignored.
    let mut fields = value.split([',', ':']);
    let mut next = || fields.next().filter(|f| !f.is_empty());
    let file = next().map(PathBuf::from);
    let backing = next().map(PathBuf::from);
    let serial = next().map(str::to_owned);
    Ok(Arg::Ubd {
        unit: u8::try_from(unit).unwrap_or(u8::MAX),
        flags,
        file,
        backing,
        serial,
    })
}

fn parse_line(
    device: &'static str,
    units: u64,
    rest: &str,
) -> Result<(Option<u64>, Channels), ParseError> {
    // line_setup(), line.c.
    let (unit, value) = match rest.strip_prefix('=') {
        Some(value) => (None, value),
        None => {
            let (n, used) = strtoul0(rest).unwrap_or((0, 0));
            let Some(value) = rest.get(used..).and_then(|r| r.strip_prefix('=')) else {
                return Err(ParseError::LineUnit {
                    device,
                    text: rest.into(),
                });
            };
            if n >= units {
                return Err(ParseError::LineUnitRange {
                    device,
                    unit: n,
                    max: units - 1,
                });
            }
            (Some(n), value)
        }
    };
    Ok((unit, parse_channels(value)?))
}

/// `parse_chan_pair()`, `chan_kern.c`.
pub(crate) fn parse_channels(value: &str) -> Result<Channels, ParseError> {
    if value == "none" {
        return Ok(Channels::None);
    }
    match value.split_once(',') {
        Some((input, output)) => Ok(Channels::Pair(
            parse_channel(input)?,
            parse_channel(output)?,
        )),
        None => Ok(Channels::Both(parse_channel(value)?)),
    }
}

fn parse_channel(text: &str) -> Result<Channel, ParseError> {
    let bad = |hint: String| ParseError::Channel {
        text: text.into(),
        hint,
    };
    // Table order and prefix matching of parse_chan(), chan_kern.c: `ptsX` is `pts`.
    let number = |arg: &str, what: &str| -> Result<u64, ParseError> {
        let Some(digits) = arg.strip_prefix(':') else {
            return Err(bad(format!(" (channel type `{what}` needs `{what}:<n>`)")));
        };
        match strtoul0(digits) {
            Some((n, used)) if used == digits.len() => Ok(n),
            _ => Err(bad(format!(" (`{digits}` is not a number)"))),
        }
    };
    if let Some(arg) = text.strip_prefix("fd") {
        let n = number(arg, "fd")?;
        return u32::try_from(n)
            .map(Channel::Fd)
            .map_err(|_| bad(format!(" ({n} is not a descriptor number)")));
    }
    if text.starts_with("null") {
        return Ok(Channel::Null);
    }
    if let Some(arg) = text.strip_prefix("port") {
        let n = number(arg, "port")?;
        return u16::try_from(n)
            .map(Channel::Port)
            .map_err(|_| bad(format!(" ({n} is not a TCP port)")));
    }
    if text.starts_with("pty") {
        return Ok(Channel::Pty);
    }
    if text.starts_with("pts") {
        return Ok(Channel::Pts);
    }
    if let Some(arg) = text.strip_prefix("tty") {
        return match arg.strip_prefix(':') {
            Some(dev) => Ok(Channel::Tty(dev.into())),
            None => Err(bad(" (channel type `tty` needs `tty:<host device>`)".into())),
        };
    }
    if text.starts_with("xterm") {
        return Ok(Channel::Xterm);
    }
    let hint = if text.starts_with('/') {
        format!("; did you mean `tty:{text}`?")
    } else if text.parse::<u32>().is_ok() {
        format!("; did you mean `fd:{text}`?")
    } else {
        String::new()
    };
    Err(bad(hint))
}

fn parse_eth(rest: &str) -> Result<Arg, ParseError> {
    // eth_parse(), net_kern.c.
    let (unit, used) = strtoul0(rest).ok_or_else(|| ParseError::EthUnit(rest.into()))?;
    let Some(spec) = rest.get(used..).and_then(|r| r.strip_prefix('=')) else {
        return Err(ParseError::EthEquals(rest.into()));
    };
    let mut parts = spec.split(',');
    let name = parts.next().unwrap_or("");
    let fields: Vec<&str> = parts.collect();
    let transport = parse_transport(name, &fields)?;
    Ok(Arg::Eth { unit, transport })
}

fn parse_transport(name: &str, fields: &[&str]) -> Result<Transport, ParseError> {
    // The grammar is the transport's whatever the kernel: whether a kernel has it is the
    // checker's question (TransportSpec::kernels), not the parser's.
    let Some(spec) = options::transport(name) else {
        return Ok(Transport::Other {
            name: name.into(),
            fields: fields.iter().map(|f| (*f).to_owned()).collect(),
        });
    };
    let max = spec.fields().len();
    if name != "slirp" && fields.len() > max {
        return Err(if spec.ignores_extra_fields() {
            ParseError::IgnoredFields {
                transport: spec.name(),
                max,
                ignored: fields.len() - max,
            }
        } else {
            ParseError::ExtraFields {
                transport: spec.name(),
                max,
                given: fields.len(),
            }
        });
    }
    let get = |i: usize| {
        fields
            .get(i)
            .filter(|f| !f.is_empty())
            .map(|f| (*f).to_owned())
    };
    let mac = |i: usize| get(i).map(Mac);
    let path = |i: usize| get(i).map(PathBuf::from);
    Ok(match name {
        "ethertap" => Transport::Ethertap {
            dev: get(0),
            mac: mac(1),
            gate: get(2),
        },
        "tuntap" => Transport::Tuntap {
            dev: get(0),
            mac: mac(1),
            gate: get(2),
        },
        "daemon" => Transport::Daemon {
            mac: mac(0),
            sock_type: get(1),
            ctl: path(2),
        },
        "mcast" => Transport::Mcast {
            mac: mac(0),
            group: get(1),
            port: get(2),
            ttl: get(3),
        },
        "ucast" => Transport::Ucast {
            mac: mac(0),
            remote: get(1),
            listen_port: get(2),
            remote_port: get(3),
        },
        "slirp" => Transport::Slirp {
            mac: mac(0),
            argv: fields.iter().skip(1).map(|f| (*f).to_owned()).collect(),
        },
        "slip" => Transport::Slip { gate: get(0) },
        "vde" => Transport::Vde {
            switch: path(0),
            mac: mac(1),
            port: get(2),
            group: get(3),
            mode: get(4),
            description: get(5),
        },
        _ => Transport::Other {
            name: name.into(),
            fields: fields.iter().map(|f| (*f).to_owned()).collect(),
        },
    })
}

fn parse_vec(rest: &str) -> Result<Arg, ParseError> {
    // vector_parse(), vector_kern.c: kstrtouint(…, 0) over the text before `:`.
    let Some((number, spec)) = rest.split_once(':') else {
        return Err(ParseError::VecColon(rest.into()));
    };
    let unit = match strtoul0(number) {
        Some((n, used)) if used == number.len() && n <= u64::from(u32::MAX) => n,
        _ => return Err(ParseError::VecUnit(number.into())),
    };
    let mut pairs = Vec::new();
    if !spec.is_empty() {
        for pair in spec.split(',') {
            let Some((k, v)) = pair.split_once('=') else {
                return Err(ParseError::VecKeyWithoutValue(pair.into()));
            };
            if v.contains('=') {
                return Err(ParseError::VecDoubleEquals(pair.into()));
            }
            pairs.push((k.to_owned(), v.to_owned()));
        }
    }
    Ok(Arg::Vec { unit, pairs })
}

fn parse_virtio(rest: &str) -> Result<Arg, ParseError> {
    let bad = || ParseError::Virtio(rest.into());
    let (socket, ids) = rest.split_once(':').ok_or_else(bad)?;
    let mut ids = ids.split(':');
    let id = |s: Option<&str>| -> Result<Option<u32>, ParseError> {
        match s {
            None => Ok(None),
            Some(s) if !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()) => {
                s.parse().map(Some).map_err(|_| bad())
            }
            Some(_) => Err(bad()),
        }
    };
    let virtio_id = id(ids.next())?.ok_or_else(bad)?;
    let platform_id = id(ids.next())?;
    if ids.next().is_some() || socket.is_empty() {
        return Err(bad());
    }
    Ok(Arg::VirtioDevice {
        socket: socket.into(),
        virtio_id,
        platform_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn one(word: &str) -> Arg {
        let cmdline = CommandLine::parse(&[word]);
        assert_eq!(cmdline.to_argv(), [word], "round trip of {word:?}");
        cmdline.args()[0].clone()
    }

    #[test]
    fn mem_uses_memparse_and_renders_the_largest_exact_suffix() {
        assert_eq!(one("mem=256M"), Arg::Mem(256 << 20));
        assert_eq!(one("mem=1G"), Arg::Mem(1 << 30));
        assert_eq!(one("mem=1000"), Arg::Mem(1000));
        assert_eq!(one("mem=0x100m").meaning(), &Arg::Mem(256 << 20));
        assert_eq!(one("mem=010K").meaning(), &Arg::Mem(8 << 10));
        assert_eq!(one("mem=128MB").meaning(), &Arg::Mem(128 << 20));
        assert!(matches!(
            one("mem=lots"),
            Arg::Invalid {
                error: ParseError::Size(_),
                ..
            }
        ));
        assert_eq!(Arg::Mem(1536 << 20).to_string(), "mem=1536M");
    }

    #[test]
    fn ubd_units_are_base_zero_numbers_or_letters() {
        let ubd8 = one("ubd010=/x");
        assert!(matches!(ubd8.meaning(), Arg::Ubd { unit: 8, .. }));
        assert!(matches!(one("ubdb=/x").meaning(), Arg::Ubd { unit: 1, .. }));
        assert!(matches!(one("ubd15=/x"), Arg::Ubd { unit: 15, .. }));
        assert!(matches!(
            one("ubd16=/x"),
            Arg::Invalid {
                error: ParseError::UbdUnitRange(16),
                ..
            }
        ));
        assert!(matches!(
            one("ubdq=/x"),
            Arg::Invalid {
                error: ParseError::UbdUnitRange(16),
                ..
            }
        ));
        assert!(matches!(
            one("ubd_0=/x"),
            Arg::Invalid {
                error: ParseError::UbdUnit(_),
                ..
            }
        ));
    }

    #[test]
    fn ubd_flags_and_fields() {
        let arg = one("ubd1rc=/cow,/back,SER");
        assert_eq!(
            arg,
            Arg::Ubd {
                unit: 1,
                flags: UbdFlags {
                    read_only: true,
                    shared: true,
                    ..UbdFlags::default()
                },
                file: Some("/cow".into()),
                backing: Some("/back".into()),
                serial: Some("SER".into()),
            }
        );
        assert!(matches!(
            one("ubd0=/a:/b").meaning(),
            Arg::Ubd {
                backing: Some(_),
                ..
            }
        ));
        assert!(matches!(
            one("ubd0=/a,,S"),
            Arg::Ubd {
                backing: None,
                serial: Some(_),
                ..
            }
        ));
        assert!(matches!(
            one("ubd0x=/a"),
            Arg::Invalid {
                error: ParseError::UbdFlag('x'),
                ..
            }
        ));
        assert!(matches!(
            one("ubd0rrrrrrr=/a"),
            Arg::Invalid {
                error: ParseError::UbdTooManyFlags(7),
                ..
            }
        ));
        assert!(matches!(one("ubd0rrrrrr=/a").meaning(), Arg::Ubd { .. }));
        assert_eq!(one("ubd=sync"), Arg::UbdSync);
        assert!(matches!(
            one("ubd=3"),
            Arg::Invalid {
                error: ParseError::UbdFakeMajor(_),
                ..
            }
        ));
    }

    #[test]
    fn lines_and_channels() {
        assert_eq!(
            one("con0=fd:0,fd:1"),
            Arg::Con {
                unit: Some(0),
                channels: Channels::Pair(Channel::Fd(0), Channel::Fd(1))
            }
        );
        assert_eq!(
            one("con=null"),
            Arg::Con {
                unit: None,
                channels: Channels::Both(Channel::Null)
            }
        );
        assert!(matches!(one("ssl63=pts"), Arg::Ssl { unit: Some(63), .. }));
        assert!(matches!(
            one("ssl64=pts"),
            Arg::Invalid {
                error: ParseError::LineUnitRange { unit: 64, .. },
                ..
            }
        ));
        assert!(matches!(one("con1=tty:/dev/tty8"), Arg::Con { .. }));
        match one("con1=/dev/tty8") {
            Arg::Invalid { error, .. } => {
                assert!(error.to_string().contains("did you mean `tty:/dev/tty8`"))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(one("con1=fd:x"), Arg::Invalid { .. }));
        assert!(matches!(
            one("con1=none"),
            Arg::Con {
                channels: Channels::None,
                ..
            }
        ));
        assert!(matches!(one("console=ttyS0"), Arg::Known { .. }));
        assert!(matches!(one("ssl-non-raw"), Arg::Known { .. }));
    }

    #[test]
    fn eth_transports_and_fields() {
        assert_eq!(
            one("eth0=daemon,,unix,/tmp/s.ctl"),
            Arg::Eth {
                unit: 0,
                transport: Transport::daemon("/tmp/s.ctl")
            }
        );
        assert!(matches!(
            one("eth1=pcap,eth0"),
            Arg::Eth {
                transport: Transport::Other { .. },
                ..
            }
        ));
        assert!(matches!(
            one("eth1=tuntap,tap0,,,x"),
            Arg::Invalid {
                error: ParseError::ExtraFields {
                    max: 3,
                    given: 4,
                    ..
                },
                ..
            }
        ));
        assert!(matches!(
            one("eth1=daemon,,unix,/c,/d"),
            Arg::Invalid {
                error: ParseError::IgnoredFields { .. },
                ..
            }
        ));
        assert!(matches!(
            one("eth0=slirp,,slirp,-P,x"),
            Arg::Eth {
                transport: Transport::Slirp { .. },
                ..
            }
        ));
        assert!(matches!(one("ethX=tuntap"), Arg::Invalid { .. }));
        assert!(matches!(one("eth0tuntap"), Arg::Invalid { .. }));
        assert!(matches!(
            one("eth0=daemon,,unix,").meaning(),
            Arg::Eth { .. }
        ));
    }

    #[test]
    fn macs_are_read_like_the_kernel() {
        assert_eq!(
            Mac::from_text("fe:fd:0:1:2:3").bytes(),
            Some([0xfe, 0xfd, 0, 1, 2, 3])
        );
        assert_eq!(Mac::from_text("fe:fd:0:1:2").bytes(), None);
        assert_eq!(Mac::from_text("zz:fd:0:1:2:3").bytes(), None);
        assert_eq!(
            Mac::new([0xfe, 0xfd, 0, 1, 2, 3]).as_str(),
            "fe:fd:00:01:02:03"
        );
    }

    #[test]
    fn vec_pairs() {
        assert_eq!(
            one("vec0:transport=tap,ifname=tap0"),
            Arg::Vec {
                unit: 0,
                pairs: vec![
                    ("transport".into(), "tap".into()),
                    ("ifname".into(), "tap0".into())
                ]
            }
        );
        assert!(matches!(one("vec0:transport"), Arg::Invalid { .. }));
        assert!(matches!(one("vec0:a=b=c"), Arg::Invalid { .. }));
        assert!(matches!(one("vec0"), Arg::Invalid { .. }));
        assert!(matches!(one("vecx:transport=tap"), Arg::Invalid { .. }));
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
