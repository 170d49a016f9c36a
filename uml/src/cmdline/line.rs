//! Console and serial lines: `con[<n>]=` and `ssl[<n>]=` with their channels
//! (`line.c`, `chan_kern.c`).

use std::fmt;
use std::path::PathBuf;

use super::ParseError;
use super::number::strtoul0;

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
pub(super) fn parse_line(
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

#[cfg(test)]
mod tests {
    use super::super::tests::one;
    use super::*;
    use crate::cmdline::Arg;

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
}
