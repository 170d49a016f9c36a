//! What a mount shows: the SOURCE argument, and the guest's mount table turned into a list of
//! disks and mount points.
//!
//! SOURCE forms: `UMID:/PATH` (a running guest, PATH inside it), `UMID:` (its root),
//! `UMID:ubdN:/PATH` (one of its disks), `/path/disk.img[:/PATH]` (an image of a stopped
//! guest). The guest's tree comes from `proc 1/mountinfo` over mconsole: init's mount table
//! names each mount's device number (`98:16` is ubd unit 1, [`uml::ubd::device`]), so a disk
//! is found however its device node was named.

use std::path::{Path, PathBuf};

/// Why a SOURCE argument could not be understood.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SourceError {
    #[error(
        "cannot understand the source \"{0}\": accepted forms are UMID:/PATH, UMID:, UMID:ubdN:/PATH, /path/disk.img and /path/disk.img:/PATH"
    )]
    Malformed(String),
    #[error("bad disk in the source")]
    BadDisk(#[from] uml::ubd::NameError),
    #[error("the path inside the guest must be absolute, not \"{0}\"")]
    RelativePath(String),
}

/// A parsed SOURCE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A running guest: its whole tree, or one disk.
    Guest {
        umid: String,
        disk: Option<u32>,
        path: String,
    },
    /// A disk image (or COW file) of a stopped guest.
    Image { image: PathBuf, path: String },
}

impl Source {
    /// Parse SOURCE.
    ///
    /// # Errors
    /// [`SourceError`] for an empty umid, a bad disk name, or a relative inner path.
    pub fn parse(s: &str) -> Result<Source, SourceError> {
        if s.starts_with('/') || s.starts_with('.') || Path::new(s).is_file() {
            if Path::new(s).exists() {
                return Ok(Source::Image {
                    image: s.into(),
                    path: "/".into(),
                });
            }
            if let Some((img, inner)) = s.rsplit_once(':')
                && (inner.is_empty() || inner.starts_with('/'))
                && !img.is_empty()
            {
                return Ok(Source::Image {
                    image: img.into(),
                    path: normalize(if inner.is_empty() { "/" } else { inner }),
                });
            }
            return Ok(Source::Image {
                image: s.into(),
                path: "/".into(),
            });
        }
        let Some((umid, rest)) = s.split_once(':') else {
            return Err(SourceError::Malformed(s.into()));
        };
        if umid.is_empty() || umid.contains('/') {
            return Err(SourceError::Malformed(s.into()));
        }
        let (disk, path) = if rest.starts_with("ubd") {
            let (d, p) = rest.split_once(':').unwrap_or((rest, "/"));
            (Some(uml::ubd::unit_of_name(d)?), p)
        } else {
            (None, rest)
        };
        let path = if path.is_empty() { "/" } else { path };
        if !path.starts_with('/') {
            return Err(SourceError::RelativePath(path.into()));
        }
        Ok(Source::Guest {
            umid: umid.into(),
            disk,
            path: normalize(path),
        })
    }
}

/// `/a//b/./c/` → `/a/b/c`; `..` goes up (never above `/`).
pub fn normalize(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

/// One line of `/proc/<pid>/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// The mount's id (unique among the mounts that exist at one time).
    pub id: u32,
    pub major: u32,
    pub minor: u32,
    /// The directory of the filesystem that is mounted (not `/` for a bind mount).
    pub root: String,
    pub point: String,
    pub fstype: String,
    pub source: String,
    pub super_options: String,
}

/// Undo the octal escapes the kernel puts in mountinfo paths (`\040` for a space). The
/// kernel only writes escapes of bytes (`\000` to `\377`); anything else, like `\777` from
/// a hostile guest, is kept literally.
fn unescape(s: &str) -> String {
    String::from_utf8_lossy(&unescape_bytes(s.as_bytes())).into_owned()
}

/// [`unescape`] on bytes, keeping them as they are (paths need not be UTF-8).
fn unescape_bytes(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let digits = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        let value = digits.map(|d| d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0')));
        match value.and_then(|v| u8::try_from(v).ok()) {
            Some(v) if b[i] == b'\\' => {
                out.push(v);
                i += 4;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    out
}

/// The mount points of FUSE filesystems in mountinfo bytes (this host's, so trusted, but its
/// paths need not be UTF-8: they are compared as bytes).
pub fn fuse_mount_points(text: &[u8]) -> Vec<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    let mut out = Vec::new();
    for line in text.split(|&c| c == b'\n').take(100_000) {
        let f: Vec<&[u8]> = line.split(|&c| c == b' ').collect();
        let Some(sep) = f.iter().position(|x| *x == b"-") else {
            continue;
        };
        let (Some(point), Some(fstype)) = (f.get(4), f.get(sep + 1)) else {
            continue;
        };
        if sep >= 6 && (*fstype == b"fuse" || fstype.starts_with(b"fuse.")) {
            out.push(PathBuf::from(std::ffi::OsString::from_vec(unescape_bytes(
                point,
            ))));
        }
    }
    out
}

/// Parse mountinfo text; malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    let mut out = Vec::new();
    for line in text.lines().take(10_000) {
        let f: Vec<&str> = line.split(' ').collect();
        let Some(sep) = f.iter().position(|x| *x == "-") else {
            continue;
        };
        if sep < 6 || f.len() < sep + 3 {
            continue;
        }
        let Some((ma, mi)) = f[2].split_once(':') else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (ma.parse(), mi.parse()) else {
            continue;
        };
        out.push(MountInfo {
            id: f[0].parse().unwrap_or(0),
            major,
            minor,
            root: unescape(f[3]),
            point: normalize(&unescape(f[4])),
            fstype: f[sep + 1].into(),
            source: unescape(f[sep + 2]),
            super_options: f.get(sep + 3).map(|s| unescape(s)).unwrap_or_default(),
        });
    }
    out
}

/// What a guest mount shows on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountKind {
    /// An ext2/3/4 filesystem on ubd unit `unit`, from directory `root` of that filesystem.
    Ubd { unit: u32, root: String },
    /// A hostfs mount of host directory `dir`.
    Host { dir: PathBuf },
    /// Something the host cannot see into (tmpfs, proc, sysfs, a partition, ...): an empty
    /// directory.
    Opaque { what: String },
}

/// One mount of the guest's tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestMount {
    /// The guest's mount id (0 when not from a mount table).
    pub id: u32,
    pub point: String,
    pub kind: MountKind,
}

/// Turn the guest's mountinfo into the mounts to show, in mount order (a later mount at the
/// same point hides an earlier one).
pub fn guest_mounts(info: &[MountInfo]) -> Vec<GuestMount> {
    info.iter()
        .map(|m| {
            let ubd = uml::ubd::device(m.major, m.minor);
            let kind = if let Some(uml::ubd::Device { unit, partition: 0 }) = ubd {
                MountKind::Ubd {
                    unit,
                    root: normalize(&m.root),
                }
            } else if let Some(d) = ubd {
                MountKind::Opaque {
                    what: format!(
                        "a partition of ubd{} ({}), which umlfs does not read",
                        d.unit, m.source
                    ),
                }
            } else if m.fstype == "hostfs" {
                // hostfs shows its host directory as the last super option
                // (fs/hostfs/hostfs_kern.c hostfs_show_options prints ",<root_ino path>").
                let dir = m
                    .super_options
                    .rsplit(',')
                    .next()
                    .filter(|d| d.starts_with('/'))
                    .unwrap_or("/");
                let root = normalize(&m.root);
                MountKind::Host {
                    dir: PathBuf::from(normalize(&format!("{dir}{root}"))),
                }
            } else {
                MountKind::Opaque {
                    what: format!("a {} mount", m.fstype),
                }
            };
            GuestMount {
                id: m.id,
                point: m.point.clone(),
                kind,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_forms_parse() {
        assert_eq!(
            Source::parse("web1:/").unwrap(),
            Source::Guest {
                umid: "web1".into(),
                disk: None,
                path: "/".into()
            }
        );
        assert_eq!(
            Source::parse("web1:").unwrap(),
            Source::parse("web1:/").unwrap()
        );
        assert_eq!(
            Source::parse("web1:ubd1:/etc/").unwrap(),
            Source::Guest {
                umid: "web1".into(),
                disk: Some(1),
                path: "/etc".into()
            }
        );
        assert_eq!(
            Source::parse("web1:ubdb").unwrap(),
            Source::Guest {
                umid: "web1".into(),
                disk: Some(1),
                path: "/".into()
            }
        );
        assert_eq!(
            Source::parse("/nonexistent/d.img:/srv").unwrap(),
            Source::Image {
                image: "/nonexistent/d.img".into(),
                path: "/srv".into()
            }
        );
        // Units are read as the kernel reads them: ubd010 is unit 8.
        assert_eq!(
            Source::parse("web1:ubd010:/").unwrap(),
            Source::Guest {
                umid: "web1".into(),
                disk: Some(8),
                path: "/".into()
            }
        );
        assert!(Source::parse("web1").is_err());
        assert!(Source::parse("web1:ubd99:/").is_err());
        assert!(Source::parse("web1:etc").is_err());
    }

    #[test]
    fn mountinfo_of_a_guest_maps_disks_hostfs_and_opaque_mounts() {
        let text = "16 1 0:15 / / ro,relatime - hostfs root ro,/\n\
            18 16 0:16 / /proc rw,relatime - proc proc rw\n\
            19 16 0:17 / /tmp rw,relatime - tmpfs tmpfs rw\n\
            21 19 98:16 / /tmp/d rw,relatime - ext4 /tmp/ubdb rw\n\
            22 19 0:19 / /tmp/h rw,relatime - hostfs none rw,/usr/share\n\
            23 19 98:33 / /tmp/p rw - ext4 /dev/ubdc1 rw\n\
            24 19 98:0 /srv /tmp/with\\040space rw - ext4 /dev/ubda rw\n\
            garbage line\n";
        let m = guest_mounts(&parse_mountinfo(text));
        assert_eq!(m.len(), 7);
        assert_eq!(m[0].kind, MountKind::Host { dir: "/".into() });
        assert!(matches!(m[1].kind, MountKind::Opaque { .. }));
        assert_eq!(
            m[3],
            GuestMount {
                id: 21,
                point: "/tmp/d".into(),
                kind: MountKind::Ubd {
                    unit: 1,
                    root: "/".into()
                }
            }
        );
        assert_eq!(
            m[4].kind,
            MountKind::Host {
                dir: "/usr/share".into()
            }
        );
        assert!(matches!(m[5].kind, MountKind::Opaque { .. }));
        assert_eq!(m[6].point, "/tmp/with space");
        assert_eq!(
            m[6].kind,
            MountKind::Ubd {
                unit: 0,
                root: "/srv".into()
            }
        );
    }

    #[test]
    fn out_of_range_escapes_are_kept_literally() {
        // \777 is 511: it overflowed a u8 (a panic in debug builds, a wrong byte in release).
        assert_eq!(unescape("/a\\777b"), "/a\\777b");
        assert_eq!(unescape("/a\\400"), "/a\\400");
        assert_eq!(unescape("/a\\377"), "/a\u{fffd}");
        assert_eq!(unescape("/x\\040y\\134"), "/x y\\");
        assert_eq!(unescape("\\12"), "\\12");
        let m = parse_mountinfo("1 0 98:0 / /m\\777 rw - ext4 /dev/ubda rw\n");
        assert_eq!(m[0].point, "/m\\777");
    }

    #[test]
    fn fuse_mount_points_keep_non_utf8_bytes() {
        use std::os::unix::ffi::OsStrExt;
        let text = b"30 1 0:40 / /m/\\377x rw - fuse.umlfs a rw\n31 1 0:41 / /n rw - ext4 b rw\n";
        let p = fuse_mount_points(text);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].as_os_str().as_bytes(), b"/m/\xffx");
    }
}
