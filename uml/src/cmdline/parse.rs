//! How a word is classified: why an option's handler rejects it ([`ParseError`]), the typed
//! parsers the option table points at, and what the kernel keeps of a word it accepts with a
//! warning.

use super::line::parse_line;
use super::net::{parse_eth, parse_vec};
use super::number::parse_size;
use super::ubd::parse_ubd;
use super::{Arg, CON_UNITS, SSL_UNITS};
use crate::options::OptionSpec;

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
    #[error("`{0}` is not a number: expected a decimal, 0x hex or 0 octal integer")]
    Number(String),
    #[error("`{text}` is read as {read}: the kernel stops at `{tail}` and ignores the rest")]
    NumberTail {
        text: String,
        read: u64,
        tail: String,
    },
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
pub(super) fn parse_option(
    spec: &'static OptionSpec,
    text: &str,
) -> Result<Option<Arg>, ParseError> {
    let rest = text.get(spec.name().len()..).unwrap_or("");
    if spec.value() == crate::options::ValueKind::Number && spec.parser().is_none() {
        // A key matched without its `=` (`time-travel-start`) leaves it on the value.
        let value = rest.strip_prefix('=').unwrap_or(rest);
        number(value)?;
        // ncpus= is read in base 10 only (kstrtoint, arch/um/kernel/smp.c).
        if spec.name() == "ncpus=" && value.parse::<i32>().is_err() {
            return Err(ParseError::Number(value.into()));
        }
        return Ok(None);
    }
    spec.parser().map(|parse| parse(rest)).transpose()
}

/// A number option's value as the kernel's `simple_strtoul(s, NULL, 0)` or `get_option` reads
/// it (a `-` sign allowed): some digits, and nothing after them.
fn number(value: &str) -> Result<u64, ParseError> {
    let digits = value.strip_prefix('-').unwrap_or(value);
    let (read, used) =
        super::number::strtoul0(digits).ok_or_else(|| ParseError::Number(value.into()))?;
    match &digits[used..] {
        "" => Ok(read),
        tail => Err(ParseError::NumberTail {
            text: value.into(),
            read,
            tail: tail.into(),
        }),
    }
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
