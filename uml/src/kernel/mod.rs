//! Which UML kernel will run, and what it has.
//!
//! A kernel is never assumed: [`resolve`] finds the binary (`--kernel`, `$UML_KERNEL`, `linux`
//! on `PATH`, then the newest kernel built by `uml kernel build`), and [`Profile::read`] asks it
//! what it is without booting it: `linux --version` prints the bare release (`6.1.176`,
//! `7.2.12`) and `linux --showconfig` the whole `.config`, both before the kernel starts.
//! A profile takes milliseconds and is cached by the binary's identity (device, inode, size,
//! modification time), so asking again costs one `stat`.
//!
//! Whether a kernel can *run a process* on this host is another matter, which no profile
//! answers: see [`diagnosis`] and `uml doctor`.

pub mod build;
pub mod delay;
pub mod diagnosis;

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// How long `linux --version` or `--showconfig` may take before the file is judged not to be a
/// UML kernel. Both answer in a few milliseconds; the bound is for programs that are not one.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The most of a probe's output that is read (a `.config` is about 100 KiB).
const PROBE_OUTPUT_MAX: usize = 4 << 20;

/// The config symbols a profile records: those umlkit's behaviour depends on. `--showconfig`
/// prints thousands; keeping these few keeps the cache small and the JSON readable.
pub const SYMBOLS: &[&str] = &[
    "UML_NET",
    "UML_NET_ETHERTAP",
    "UML_NET_TUNTAP",
    "UML_NET_SLIP",
    "UML_NET_DAEMON",
    "UML_NET_VECTOR",
    "UML_NET_VDE",
    "UML_NET_MCAST",
    "UML_NET_PCAP",
    "UML_NET_SLIRP",
    "HOSTFS",
    "BLK_DEV_UBD",
    "MCONSOLE",
    "MAGIC_SYSRQ",
    "UML_WATCHDOG",
    "SECCOMP",
    "VIRTIO_UML",
    "SSL",
    "NULL_CHAN",
    "PORT_CHAN",
    "PTY_CHAN",
    "TTY_CHAN",
    "XTERM_CHAN",
    "CON_CHAN",
    "SSL_CHAN",
    "UML_TIME_TRAVEL_SUPPORT",
    "UML_SOUND",
    "OF",
    "BLK_DEV_INITRD",
    "SMP",
    "STATIC_LINK",
    "EXT4_FS",
    "EXT4_FS_POSIX_ACL",
    "TMPFS",
    "DEVTMPFS",
    "AUTOFS_FS",
    "IPV6",
    "MODULES",
    "UNIX98_PTYS",
    "LEGACY_PTYS",
];

/// Errors of finding and profiling a kernel.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error(
        "no UML kernel found: none given with --kernel or $UML_KERNEL, no `linux` on PATH, and none built with `uml kernel build` (install the user-mode-linux package, or run `uml kernel build`)"
    )]
    NotFound,
    #[error(
        "no kernel {wanted} among the kernels built by `uml kernel build` (have: {})",
        if have.is_empty() { "none".to_owned() } else { have.join(", ") }
    )]
    NoSuchVersion { wanted: String, have: Vec<String> },
    #[error(
        "cannot run the UML kernel {} (install the user-mode-linux package, build one with `uml kernel build`, or pass --kernel)",
        path.display()
    )]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is not a UML kernel: {why}", path.display())]
    NotUml { path: PathBuf, why: String },
}

/// A kernel release: `6.1.176`, `7.2.12`, `7.3` (patch 0).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Version {
        Version {
            major,
            minor,
            patch,
        }
    }

    /// Parses the start of a release string: `6.1.176`, `7.2`, `6.12.0-rc3`, `7.2.12-um`.
    /// At least `MAJOR.MINOR` is needed; anything after the numbers is ignored.
    pub fn parse(text: &str) -> Option<Version> {
        let mut numbers = [0u32; 3];
        let mut count = 0;
        for part in text.trim().splitn(3, '.') {
            let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
            if digits.is_empty() || digits.len() > 6 {
                break;
            }
            numbers[count] = digits.parse().ok()?;
            count += 1;
            if digits.len() != part.len() {
                break;
            }
        }
        (count >= 2).then(|| Version::new(numbers[0], numbers[1], numbers[2]))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// What a kernel binary is: its release and the config symbols that matter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// The binary, as found (not canonicalised: `/usr/bin/linux` stays what the user knows).
    pub path: PathBuf,
    /// `linux --version`, trimmed.
    pub release: String,
    pub version: Version,
    /// The recorded [`SYMBOLS`] with their values (`y`, `m`, a string or number); a symbol
    /// that is not set is absent. `None` when `--showconfig` printed nothing usable.
    pub config: Option<BTreeMap<String, String>>,
    /// Why `config` is missing, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_note: Option<String>,
}

/// [`Profile::assumed`] gives kernels from this version on the config of Debian's 7.x build
/// (the vector driver only), older ones that of Debian's 6.1 build (the legacy `eth` transports
/// too).
pub const ASSUMED_VECTOR_ONLY_SINCE: Version = Version::new(6, 2, 0);

impl Profile {
    /// A profile for a kernel that is known only by version (`uml check --kernel-version`):
    /// the config symbols are those of Debian's builds of that version.
    pub fn assumed(version: Version) -> Profile {
        let debian_61: &[&str] = &[
            "UML_NET",
            "UML_NET_ETHERTAP",
            "UML_NET_TUNTAP",
            "UML_NET_SLIP",
            "UML_NET_DAEMON",
            "UML_NET_VECTOR",
            "UML_NET_VDE",
            "UML_NET_MCAST",
            "UML_NET_SLIRP",
        ];
        let common: &[&str] = &[
            "HOSTFS",
            "BLK_DEV_UBD",
            "MCONSOLE",
            "MAGIC_SYSRQ",
            "UML_WATCHDOG",
            "SSL",
            "NULL_CHAN",
            "PORT_CHAN",
            "PTY_CHAN",
            "TTY_CHAN",
            "XTERM_CHAN",
            "BLK_DEV_INITRD",
            "EXT4_FS",
            "TMPFS",
            "DEVTMPFS",
            "UNIX98_PTYS",
            "SECCOMP",
            "VIRTIO_UML",
        ];
        let mut config: BTreeMap<String, String> = common
            .iter()
            .map(|s| ((*s).to_owned(), "y".to_owned()))
            .collect();
        if version < ASSUMED_VECTOR_ONLY_SINCE {
            config.extend(debian_61.iter().map(|s| ((*s).to_owned(), "y".to_owned())));
        } else {
            config.insert("UML_NET_VECTOR".into(), "y".into());
        }
        Profile {
            path: PathBuf::new(),
            release: version.to_string(),
            version,
            config: Some(config),
            config_note: Some(format!(
                "assumed: the config of Debian's {}.{} build, not read from a kernel",
                version.major, version.minor
            )),
        }
    }

    /// Reads the profile of the kernel at `path`, from the cache when the binary has not
    /// changed since it was profiled.
    ///
    /// # Errors
    /// [`KernelError::Io`] when the file cannot be run, [`KernelError::NotUml`] when it is not a
    /// UML kernel (it does not answer `--version` with a release within two seconds).
    pub fn read(path: &Path) -> Result<Profile, KernelError> {
        let io_err = |source| KernelError::Io {
            path: path.to_owned(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io_err)?;
        if meta.is_dir() {
            return Err(KernelError::NotUml {
                path: path.to_owned(),
                why: "it is a directory".into(),
            });
        }
        if !meta.is_file() {
            return Err(KernelError::NotUml {
                path: path.to_owned(),
                why: "it is not a regular file".into(),
            });
        }
        let identity = format!(
            "{}-{}-{}-{}.{}",
            meta.dev(),
            meta.ino(),
            meta.size(),
            meta.mtime(),
            meta.mtime_nsec()
        );
        let cache = cache_dir().map(|d| d.join(format!("{identity}.json")));
        if let Some(cached) = cache.as_deref().and_then(read_cached) {
            if cached.path == path {
                return Ok(cached);
            }
            return Ok(Profile {
                path: path.to_owned(),
                ..cached
            });
        }
        let profile = Profile::probe(path)?;
        if let Some(cache) = cache {
            write_cached(&cache, &profile);
        }
        Ok(profile)
    }

    /// Asks the binary itself, bypassing the cache.
    fn probe(path: &Path) -> Result<Profile, KernelError> {
        let (ok, out) = run_probe(path, "--version")?;
        let release = String::from_utf8_lossy(&out).trim().to_owned();
        let first = release.lines().next().unwrap_or("").trim().to_owned();
        let version = Version::parse(&first).filter(|_| ok && release.lines().count() == 1);
        let Some(version) = version else {
            let shown: String = first.chars().take(60).collect();
            return Err(KernelError::NotUml {
                path: path.to_owned(),
                why: if release.is_empty() && !ok {
                    "`--version` failed without printing a kernel release (a damaged or \
                     truncated binary?)"
                        .into()
                } else if release.is_empty() {
                    "`--version` printed no kernel release".into()
                } else {
                    format!("`--version` printed {shown:?}, not a kernel release")
                },
            });
        };
        let (config, config_note) = match run_probe(path, "--showconfig") {
            Ok((true, text)) => match parse_config(&String::from_utf8_lossy(&text)) {
                Some(config) => (Some(config), None),
                None => (
                    None,
                    Some("`--showconfig` printed no UML kernel configuration".to_owned()),
                ),
            },
            Ok((false, _)) => (None, Some("`--showconfig` failed".to_owned())),
            Err(err) => (None, Some(format!("`--showconfig`: {err}"))),
        };
        if let Some(note) = &config_note {
            tracing::warn!(kernel = %path.display(), "{note}; judging by the version alone");
        }
        Ok(Profile {
            path: path.to_owned(),
            release: first,
            version,
            config,
            config_note,
        })
    }

    /// The value of config symbol `symbol` (without `CONFIG_`), or `None` when it is not set.
    /// When the config could not be read, the value Debian's build of this version has.
    pub fn symbol(&self, symbol: &str) -> Option<&str> {
        match &self.config {
            Some(config) => config.get(symbol).map(String::as_str),
            None => {
                let assumed = Profile::assumed(self.version);
                assumed
                    .config
                    .and_then(|c| c.get(symbol).cloned())
                    .map(|_| "y")
            }
        }
    }

    /// Is `symbol` built in (`y`) or a module (`m`)?
    pub fn has(&self, symbol: &str) -> bool {
        matches!(self.symbol(symbol), Some("y" | "m"))
    }

    /// `major.minor`, as users name a kernel series.
    pub fn series(&self) -> String {
        format!("{}.{}", self.version.major, self.version.minor)
    }

    /// The name the vector driver gives the first interface: `vec0` from the vector driver,
    /// `eth0` from the legacy one.
    pub fn has_legacy_net(&self) -> bool {
        self.has("UML_NET")
    }
}

/// Parses `--showconfig` output into the recorded [`SYMBOLS`]. `None` unless it is a UML
/// kernel's configuration (it sets `CONFIG_UML=y`).
fn parse_config(text: &str) -> Option<BTreeMap<String, String>> {
    let mut is_uml = false;
    let mut config = BTreeMap::new();
    for line in text.lines() {
        let Some((key, value)) = line.strip_prefix("CONFIG_").and_then(|l| l.split_once('='))
        else {
            continue;
        };
        if key == "UML" && value == "y" {
            is_uml = true;
        }
        if SYMBOLS.contains(&key) {
            config.insert(key.to_owned(), value.trim_matches('"').to_owned());
        }
    }
    is_uml.then_some(config)
}

/// Runs `kernel ARG` with no input, bounded in time and output. Returns whether it exited 0,
/// and what it printed on stdout.
fn run_probe(kernel: &Path, arg: &str) -> Result<(bool, Vec<u8>), KernelError> {
    let io_err = |source| KernelError::Io {
        path: kernel.to_owned(),
        source,
    };
    let mut command = Command::new(kernel);
    command
        .arg(arg)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0);
    let mut child = command.spawn().map_err(io_err)?;
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = (&mut stdout)
            .take(PROBE_OUTPUT_MAX as u64)
            .read_to_end(&mut out);
        out
    });
    let deadline = Instant::now() + PROBE_TIMEOUT;
    let status = loop {
        match child.try_wait().map_err(io_err)? {
            Some(status) => break Some(status),
            None if Instant::now() >= deadline => break None,
            None => std::thread::sleep(Duration::from_millis(2)),
        }
    };
    let Some(status) = status else {
        // Not a kernel that answers and exits: kill it and whatever it started.
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = child.wait();
        return Err(KernelError::NotUml {
            path: kernel.to_owned(),
            why: format!("`{arg}` did not finish within {PROBE_TIMEOUT:?}"),
        });
    };
    // The group may still hold a child that keeps the pipe open; never wait for it.
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    let out = reader.join().unwrap_or_default();
    Ok((status.success(), out))
}

/// The cached profile at `path`, if it is a regular file (a symlink is not followed) of at most
/// 64 KiB that parses; anything else is ignored and the kernel is asked again.
fn read_cached(path: &Path) -> Option<Profile> {
    use std::os::unix::fs::OpenOptionsExt;
    const MAX: u64 = 64 << 10;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut text = Vec::new();
    file.take(MAX + 1).read_to_end(&mut text).ok()?;
    if text.len() as u64 > MAX {
        return None;
    }
    serde_json::from_slice(&text).ok()
}

fn write_cached(path: &Path, profile: &Profile) {
    let Some(dir) = path.parent() else { return };
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    let Ok(json) = serde_json::to_vec(profile) else {
        return;
    };
    // Write then rename, so that a concurrent reader never sees half a file.
    let tmp = dir.join(format!(".{}.tmp", std::process::id()));
    if std::fs::write(&tmp, json).is_ok() && std::fs::rename(&tmp, path).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

/// `$XDG_CACHE_HOME/umlkit/kernel-profiles`, else `~/.cache/umlkit/kernel-profiles`.
fn cache_dir() -> Option<PathBuf> {
    xdg_dir("XDG_CACHE_HOME", ".cache").map(|d| d.join("umlkit/kernel-profiles"))
}

/// `$XDG_DATA_HOME/umlkit/kernels`, else `~/.local/share/umlkit/kernels`: where `uml kernel
/// build` installs kernels, one directory per release holding `linux`.
pub fn kernels_dir() -> Option<PathBuf> {
    xdg_dir("XDG_DATA_HOME", ".local/share").map(|d| d.join("umlkit/kernels"))
}

fn xdg_dir(var: &str, fallback: &str) -> Option<PathBuf> {
    match std::env::var_os(var).map(PathBuf::from) {
        Some(dir) if dir.is_absolute() => Some(dir),
        _ => std::env::var_os("HOME")
            .map(PathBuf::from)
            .filter(|h| h.is_absolute())
            .map(|h| h.join(fallback)),
    }
}

/// A kernel that `uml kernel build` installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Installed {
    pub release: String,
    pub version: Version,
    pub path: PathBuf,
}

/// The kernels in [`kernels_dir`], newest first. A directory whose name is not a release, or
/// that holds no `linux`, is skipped.
pub fn installed() -> Vec<Installed> {
    let Some(dir) = kernels_dir() else {
        return Vec::new();
    };
    installed_in(&dir)
}

/// The kernels installed under `dir`, newest first.
pub fn installed_in(dir: &Path) -> Vec<Installed> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<Installed> = entries
        .flatten()
        .take(1000)
        .filter_map(|entry| {
            let release = entry.file_name().to_str()?.to_owned();
            let version = Version::parse(&release)?;
            let path = entry.path().join("linux");
            path.is_file().then_some(Installed {
                release,
                version,
                path,
            })
        })
        .collect();
    found.sort_by(|a, b| b.version.cmp(&a.version).then(b.release.cmp(&a.release)));
    found
}

/// Which kernel a command should run.
///
/// `wanted` is what the user gave with `--kernel`: a path (anything with a `/`, or an existing
/// file), or a release or series (`7.2`, `7.2.12`) of a kernel built by `uml kernel build`, or a
/// command name looked up on `PATH`. Without it: `$UML_KERNEL` (same forms), then the default
/// set with `uml kernel use` ([`default_file`]), then `linux` on `PATH`, then the newest built
/// kernel.
///
/// # Errors
/// [`KernelError::NotFound`] when there is no kernel at all, [`KernelError::NoSuchVersion`] for
/// a release that was not built.
pub fn resolve(wanted: Option<&str>) -> Result<PathBuf, KernelError> {
    let from_env = std::env::var("UML_KERNEL").ok().filter(|s| !s.is_empty());
    if let Some(wanted) = wanted.or(from_env.as_deref()) {
        return resolve_named(wanted);
    }
    if let Some(configured) = configured_default() {
        return resolve_named(&configured);
    }
    if let Some(linux) = on_path("linux") {
        return Ok(linux);
    }
    installed()
        .into_iter()
        .next()
        .map(|k| k.path)
        .ok_or(KernelError::NotFound)
}

/// `$XDG_CONFIG_HOME/umlkit/kernel`, else `~/.config/umlkit/kernel`: one line naming the
/// default kernel, in any form `--kernel` takes.
pub fn default_file() -> Option<PathBuf> {
    xdg_dir("XDG_CONFIG_HOME", ".config").map(|d| d.join("umlkit/kernel"))
}

/// The default set with `uml kernel use`, if any.
pub fn configured_default() -> Option<String> {
    let mut text = Vec::new();
    std::fs::File::open(default_file()?)
        .ok()?
        .take(4096)
        .read_to_end(&mut text)
        .ok()?;
    let text = String::from_utf8_lossy(&text);
    let line = text.lines().next()?.trim();
    (!line.is_empty()).then(|| line.to_owned())
}

/// Makes `kernel` (any form `--kernel` takes) the default, after checking that it resolves to a
/// UML kernel. Returns its profile.
///
/// # Errors
/// When it does not resolve, is not a UML kernel, or the file cannot be written.
pub fn set_default(kernel: &str) -> Result<Profile, KernelError> {
    let path = resolve_named(kernel)?;
    let profile = Profile::read(&path)?;
    let file = default_file().ok_or(KernelError::NotFound)?;
    let io_err = |source| KernelError::Io {
        path: file.clone(),
        source,
    };
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(io_err)?;
    }
    std::fs::write(&file, format!("{kernel}\n")).map_err(io_err)?;
    Ok(profile)
}

fn resolve_named(wanted: &str) -> Result<PathBuf, KernelError> {
    let path = Path::new(wanted);
    if wanted.contains('/') || path.exists() {
        return Ok(path.to_owned());
    }
    if Version::parse(wanted).is_some() && wanted.chars().all(|c| c.is_ascii_digit() || c == '.') {
        let kernels = installed();
        let matches = |k: &&Installed| {
            k.release == wanted
                || k.release
                    .strip_prefix(wanted)
                    .is_some_and(|rest| rest.starts_with('.'))
        };
        return kernels
            .iter()
            .find(matches)
            .map(|k| k.path.clone())
            .ok_or_else(|| KernelError::NoSuchVersion {
                wanted: wanted.to_owned(),
                have: kernels.iter().map(|k| k.release.clone()).collect(),
            });
    }
    Ok(on_path(wanted).unwrap_or_else(|| path.to_owned()))
}

/// The kernel of the distribution's package: Debian's `user-mode-linux` installs
/// `linux.uml`, which `linux` points to through the `linux` alternative unless another kernel
/// took that name (scripts/install-deps registers a built one on hosts where the packaged one
/// cannot run a process). Else whatever `linux` on `PATH` is.
pub fn packaged() -> Option<PathBuf> {
    on_path("linux.uml").or_else(|| on_path("linux"))
}

/// `name` looked up in `$PATH`, as a shell would: the first executable regular file.
pub fn on_path(name: &str) -> Option<PathBuf> {
    on_path_in(name.as_ref(), &std::env::var_os("PATH")?)
}

/// `name` looked up in the directories of `path` (a `PATH` value, not necessarily this
/// process's): the first executable regular file. Relative directories are skipped.
pub fn on_path_in(name: &std::ffi::OsStr, path: &std::ffi::OsStr) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(path)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(name))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_like_kernel_releases() {
        assert_eq!(Version::parse("6.1.176"), Some(Version::new(6, 1, 176)));
        assert_eq!(Version::parse("7.2"), Some(Version::new(7, 2, 0)));
        assert_eq!(Version::parse("6.12.0-rc3"), Some(Version::new(6, 12, 0)));
        assert_eq!(Version::parse("7.2.12-um\n"), Some(Version::new(7, 2, 12)));
        assert_eq!(Version::parse("7"), None);
        assert_eq!(Version::parse(""), None);
        assert_eq!(Version::parse("hello"), None);
        assert_eq!(Version::parse("99999999999.1"), None);
        assert!(Version::new(6, 12, 0) > Version::new(6, 1, 176));
        assert!(Version::new(7, 0, 0) > Version::new(6, 12, 113));
    }

    #[test]
    fn config_needs_a_uml_kernel() {
        let text = "#\n# Linux/um 7.2.12 Kernel Configuration\nCONFIG_UML=y\nCONFIG_HOSTFS=y\n\
                    CONFIG_CON_CHAN=\"pts\"\n# CONFIG_UML_NET is not set\nCONFIG_OTHER=y\n";
        let config = parse_config(text).unwrap();
        assert_eq!(config.get("HOSTFS").map(String::as_str), Some("y"));
        assert_eq!(config.get("CON_CHAN").map(String::as_str), Some("pts"));
        assert!(!config.contains_key("UML_NET"));
        assert!(!config.contains_key("OTHER"));
        assert_eq!(parse_config("CONFIG_X86=y\nCONFIG_HOSTFS=y\n"), None);
        assert_eq!(parse_config("garbage\0\u{1}"), None);
    }

    #[test]
    fn assumed_profiles_follow_debian_builds() {
        let old = Profile::assumed(Version::new(6, 1, 0));
        assert!(old.has("UML_NET_DAEMON") && old.has("UML_NET_VECTOR"));
        let new = Profile::assumed(Version::new(7, 2, 0));
        assert!(!new.has("UML_NET") && new.has("UML_NET_VECTOR") && new.has("SECCOMP"));
    }

    #[test]
    fn installed_kernels_newest_first_and_junk_skipped() {
        let dir = tempfile::tempdir().unwrap();
        for release in ["6.1.176", "7.2.12", "7.10.1", "notaversion"] {
            std::fs::create_dir(dir.path().join(release)).unwrap();
            std::fs::write(dir.path().join(release).join("linux"), "").unwrap();
        }
        std::fs::create_dir(dir.path().join("7.3.0")).unwrap(); // no binary
        let found: Vec<String> = installed_in(dir.path())
            .into_iter()
            .map(|k| k.release)
            .collect();
        assert_eq!(found, ["7.10.1", "7.2.12", "6.1.176"]);
    }
}
