//! Numbers as the kernel reads them (`simple_strtoull`, `memparse`) and sizes as umlkit
//! writes them.

use std::fmt;

use super::ParseError;

/// A size as `mem=` writes it: the largest exact binary suffix.
pub(super) struct Size(pub(super) u64);

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

#[cfg(test)]
mod tests {
    use super::super::tests::one;
    use crate::cmdline::{Arg, ParseError};

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
}
