//! ubd disks as the kernel names them: units (`ubd1`, `ubdb`, `ubd010`), their device numbers
//! inside the guest, and the reply of mconsole `config ubdN`.
//!
//! Facts from arch/um/drivers/ubd_kern.c: `parse_unit()` reads a unit as a base-0 number
//! (`010` is 8, `0x3` is 3) or one letter (`a` is 0); there are `MAX_DEV` = 16 units; the block
//! major is `UBD_MAJOR` = 98 with `1 << UBD_SHIFT` = 16 minors per unit (minor 0 of a unit is
//! the whole disk, the others its partitions); `ubd_get_config()` prints the file, then `,` and
//! the backing file for a COW disk, and nothing for a unit with no file.

use std::path::PathBuf;

/// The block major of the ubd driver (`UBD_MAJOR`).
pub const MAJOR: u32 = 98;
/// Minors per unit (`1 << UBD_SHIFT`).
pub const MINORS_PER_UNIT: u32 = 16;
/// How many units the driver has (`MAX_DEV`).
pub const UNITS: u32 = 16;

/// Why a disk name is not a ubd unit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("`{0}` is not a ubd disk: expected ubd0 to ubd15 (or ubd010, ubd0xf) or ubda to ubdp")]
    NotUbd(String),
    #[error("`{name}` is ubd unit {unit}, out of range: units are 0 to 15 (ubda to ubdp)")]
    Range { name: String, unit: u64 },
}

/// The unit a disk name means, as the kernel reads it: `ubd1` and `ubdb` are 1, `ubd010` is 8.
///
/// # Errors
/// [`NameError`] for anything else, or a unit of 16 and more.
pub fn unit_of_name(name: &str) -> Result<u32, NameError> {
    let bad = || NameError::NotUbd(name.to_owned());
    let rest = name.strip_prefix("ubd").ok_or_else(bad)?;
    let unit = match rest.as_bytes() {
        [c @ b'a'..=b'z'] => u64::from(c - b'a'),
        _ => parse_base0(rest).ok_or_else(bad)?,
    };
    if unit >= u64::from(UNITS) {
        return Err(NameError::Range {
            name: name.to_owned(),
            unit,
        });
    }
    Ok(unit as u32)
}

/// A whole string as `simple_strtoul(s, _, 0)` reads a number: `0x` hex, a leading `0`
/// octal, else decimal.
fn parse_base0(s: &str) -> Option<u64> {
    let (digits, radix) = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (h, 16)
    } else if s.len() > 1 && s.starts_with('0') {
        (&s[1..], 8)
    } else {
        (s, 10)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// The name mconsole and the kernel command line use for a unit: `ubd1`.
pub fn name(unit: u32) -> String {
    format!("ubd{unit}")
}

/// The guest's device node name of a unit: `ubdb` for unit 1 (`/dev/ubdb`).
pub fn device_name(unit: u32) -> Option<String> {
    let letter = u8::try_from(unit).ok().filter(|u| *u < 26)?;
    Some(format!("ubd{}", char::from(b'a' + letter)))
}

/// A ubd block device inside the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Device {
    pub unit: u32,
    /// 0 for the whole disk, N for its partition N.
    pub partition: u32,
}

/// The ubd device with device number `major:minor` (as the guest's mountinfo shows it).
pub fn device(major: u32, minor: u32) -> Option<Device> {
    (major == MAJOR).then_some(Device {
        unit: minor / MINORS_PER_UNIT,
        partition: minor % MINORS_PER_UNIT,
    })
}

/// A unit's files as `config ubdN` reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backing {
    /// The disk's file (the COW file of a COW disk).
    pub file: PathBuf,
    /// The backing file of a COW disk.
    pub backing: Option<PathBuf>,
}

/// Parse the reply of `config ubdN`: `FILE` or `COW,BACKING`; empty (a unit with no file)
/// gives `None`.
pub fn parse_config(reply: &str) -> Option<Backing> {
    let r = reply.trim();
    if r.is_empty() {
        return None;
    }
    Some(match r.split_once(',') {
        Some((cow, backing)) => Backing {
            file: cow.into(),
            backing: Some(backing.into()),
        },
        None => Backing {
            file: r.into(),
            backing: None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_read_as_the_kernel_reads_units() {
        assert_eq!(unit_of_name("ubd1"), Ok(1));
        assert_eq!(unit_of_name("ubdb"), Ok(1));
        assert_eq!(unit_of_name("ubdp"), Ok(15));
        // Base 0, as parse_unit(): octal and hex.
        assert_eq!(unit_of_name("ubd010"), Ok(8));
        assert_eq!(unit_of_name("ubd0xf"), Ok(15));
        assert_eq!(unit_of_name("ubd0"), Ok(0));
        assert!(matches!(
            unit_of_name("ubd16"),
            Err(NameError::Range { unit: 16, .. })
        ));
        assert!(matches!(
            unit_of_name("ubdq"),
            Err(NameError::Range { unit: 16, .. })
        ));
        for bad in ["ubd", "ubd08", "ubd1a", "sda", "ubd-1", "ubdab"] {
            assert_eq!(
                unit_of_name(bad),
                Err(NameError::NotUbd(bad.into())),
                "{bad}"
            );
        }
        assert_eq!(name(3), "ubd3");
        assert_eq!(device_name(1).as_deref(), Some("ubdb"));
    }

    #[test]
    fn device_numbers_give_unit_and_partition() {
        assert_eq!(
            device(98, 16),
            Some(Device {
                unit: 1,
                partition: 0
            })
        );
        assert_eq!(
            device(98, 33),
            Some(Device {
                unit: 2,
                partition: 1
            })
        );
        assert_eq!(device(8, 0), None);
    }

    #[test]
    fn config_replies_parse() {
        assert_eq!(parse_config(""), None);
        assert_eq!(parse_config("  \n"), None);
        assert_eq!(
            parse_config("/a/d.img"),
            Some(Backing {
                file: "/a/d.img".into(),
                backing: None
            })
        );
        assert_eq!(
            parse_config("/a/d.cow,/a/base.img\n"),
            Some(Backing {
                file: "/a/d.cow".into(),
                backing: Some("/a/base.img".into())
            })
        );
    }
}
