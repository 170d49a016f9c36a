//! ubd disks: the flag letters and `ubd<n><flags>=<file>[,<backing>][,<serial>]`
//! (`ubd_kern.c`).

use std::fmt;
use std::path::PathBuf;

use super::number::strtoul0;
use super::{Arg, ParseError, UBD_MAX_FLAGS, UBD_UNITS};

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
pub(super) fn parse_ubd(rest: &str) -> Result<Arg, ParseError> {
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

#[cfg(test)]
mod tests {
    use super::super::tests::one;
    use super::*;

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
}
