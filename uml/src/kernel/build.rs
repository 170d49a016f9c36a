//! `uml kernel build`: a UML kernel from a kernel source tree or tarball.
//!
//! The configuration is `make ARCH=um defconfig` plus umlkit's own fragment
//! ([`CONFIG_FRAGMENT`]): hostfs, ubd, mconsole, the vector network driver, the watchdog,
//! sysrq, ext4, tmpfs, devtmpfs, seccomp, virtio_uml; no modules, no debug information, no
//! boot-time self-tests, no network block devices (defconfig's 16 took 0.15 s of every boot).
//! `olddefconfig` drops a symbol it cannot satisfy without a word, so
//! every line of the fragment is checked in the resulting `.config` before compiling.
//!
//! The source is never written to: a tarball is unpacked into the build cache, and the
//! objects go to a separate output directory (`make O=`), kept for an incremental rebuild when
//! asked (`keep`). The result is installed as `<kernels_dir>/<release>/linux`, atomically.

use std::collections::VecDeque;
use std::fs;
use std::io::{self, BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{Profile, Version};

/// umlkit's kernel configuration, applied over `defconfig`.
pub const CONFIG_FRAGMENT: &str = include_str!("umlkit.config");

/// The oldest source `uml kernel build` takes: older trees lack options umlkit relies on.
pub const OLDEST: Version = Version::new(6, 1, 0);

/// The programs a kernel build runs, with the Debian package that has each.
const TOOLS: &[(&str, &str)] = &[
    ("make", "make"),
    ("gcc", "gcc"),
    ("ld", "binutils"),
    ("flex", "flex"),
    ("bison", "bison"),
    ("bc", "bc"),
    ("perl", "perl"),
    ("tar", "tar"),
    ("xz", "xz-utils"),
];

/// Errors of building a kernel.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is not a kernel source tree or tarball: {why}", path.display())]
    NotSource { path: PathBuf, why: String },
    #[error(
        "{} is Linux {version}; `uml kernel build` needs {OLDEST} or newer",
        path.display()
    )]
    TooOld { path: PathBuf, version: Version },
    #[error("UML kernels build only on x86 hosts (x86_64 or i686); this host is {0}")]
    HostArch(String),
    #[error(
        "missing build tools: {} (install the Debian packages {})",
        missing.iter().map(|(t, _)| *t).collect::<Vec<_>>().join(", "),
        missing.iter().map(|(_, p)| *p).collect::<Vec<_>>().join(" ")
    )]
    MissingTools {
        missing: Vec<(&'static str, &'static str)>,
    },
    #[error("`{step}` failed ({status}){}", tail_text(output))]
    Step {
        step: String,
        status: String,
        output: String,
    },
    #[error(
        "the configuration lacks what umlkit needs after olddefconfig: {} (their dependencies are missing in this tree)",
        symbols.join(", ")
    )]
    Config { symbols: Vec<String> },
    #[error("the built kernel does not run")]
    Result(#[source] super::KernelError),
    #[error("no directory to install kernels into: set HOME or XDG_DATA_HOME")]
    NoDataDir,
}

fn tail_text(output: &str) -> String {
    if output.trim().is_empty() {
        String::new()
    } else {
        format!("\n--- last lines of its output ---\n{output}")
    }
}

/// What to build, and where.
#[derive(Debug, Clone)]
pub struct Build {
    /// A source tree or a `.tar`, `.tar.xz`, `.tar.gz`, `.tar.bz2`, `.tar.zst` tarball of one.
    pub source: PathBuf,
    /// Parallel jobs (`make -j`).
    pub jobs: usize,
    /// Where to unpack and compile: one directory per source, reused by the next build of the
    /// same source.
    pub work_dir: PathBuf,
    /// Keep the unpacked source and the objects for an incremental rebuild.
    pub keep: bool,
    /// Where to install: `<install_dir>/<release>/linux`.
    pub install_dir: PathBuf,
}

/// Progress of a build, for a caller to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    Unpacking,
    Configuring,
    /// `steps` compile and link steps done so far.
    Compiling {
        steps: u64,
    },
    Installing,
}

/// What a finished build installed.
#[derive(Debug, Clone)]
pub struct Built {
    pub profile: Profile,
    /// The build's output directory, when kept.
    pub kept: Option<PathBuf>,
    pub elapsed: Duration,
}

impl Build {
    /// A build of `source` with the default places: the work directory under
    /// `$XDG_CACHE_HOME/umlkit/kernel-build`, the result under [`super::kernels_dir`].
    ///
    /// # Errors
    /// [`BuildError::NoDataDir`] when neither `HOME` nor the XDG variables are set.
    pub fn new(source: &Path) -> Result<Build, BuildError> {
        let install_dir = super::kernels_dir().ok_or(BuildError::NoDataDir)?;
        let cache = super::xdg_dir("XDG_CACHE_HOME", ".cache").ok_or(BuildError::NoDataDir)?;
        Ok(Build {
            source: source.to_owned(),
            jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
            work_dir: cache.join("umlkit/kernel-build"),
            keep: false,
            install_dir,
        })
    }

    /// Checks everything that can be checked before compiling: the host, the tools, and
    /// that the source is a kernel tree of a version umlkit supports.
    ///
    /// # Errors
    /// The first problem found.
    pub fn preflight(&self) -> Result<(), BuildError> {
        let arch = nix::sys::utsname::uname()
            .map(|u| u.machine().to_string_lossy().into_owned())
            .unwrap_or_default();
        if !matches!(arch.as_str(), "x86_64" | "i686" | "i586" | "i386") {
            return Err(BuildError::HostArch(arch));
        }
        let missing: Vec<_> = TOOLS
            .iter()
            .copied()
            .filter(|(tool, _)| super::on_path(tool).is_none())
            .collect();
        if !missing.is_empty() {
            return Err(BuildError::MissingTools { missing });
        }
        let meta = fs::metadata(&self.source).map_err(|source| BuildError::Io {
            path: self.source.clone(),
            source,
        })?;
        if meta.is_dir() {
            check_tree(&self.source)?;
        } else if tar_compression(&self.source).is_none() {
            return Err(BuildError::NotSource {
                path: self.source.clone(),
                why:
                    "not a directory, nor a file named .tar, .tar.xz, .tar.gz, .tar.bz2 or .tar.zst"
                        .into(),
            });
        }
        Ok(())
    }

    /// Builds and installs the kernel, calling `progress` as it goes.
    ///
    /// # Errors
    /// A [`BuildError`] naming the step that failed, with the end of its output.
    pub fn run(&self, progress: &mut dyn FnMut(Progress)) -> Result<Built, BuildError> {
        let started = Instant::now();
        self.preflight()?;
        let io_err = |path: &Path| {
            let path = path.to_owned();
            move |source| BuildError::Io { path, source }
        };
        let work = self.work_dir.join(source_id(&self.source)?);
        fs::create_dir_all(&work).map_err(io_err(&work))?;
        let tree = if self.source.is_dir() {
            self.source.clone()
        } else {
            unpack(&self.source, &work, progress)?
        };
        let version = check_tree(&tree)?;
        let out = work.join("build");
        fs::create_dir_all(&out).map_err(io_err(&out))?;

        progress(Progress::Configuring);
        let make = |args: &[&str]| {
            let mut command = Command::new("make");
            command
                .arg("-C")
                .arg(&tree)
                .arg(format!("O={}", out.display()))
                .arg("ARCH=um")
                .args(args);
            command
        };
        run_quiet(make(&["defconfig"]), "make ARCH=um defconfig")?;
        let config_path = out.join(".config");
        let mut config = fs::read_to_string(&config_path).map_err(io_err(&config_path))?;
        config.push_str("\n# umlkit\n");
        config.push_str(CONFIG_FRAGMENT);
        fs::write(&config_path, config).map_err(io_err(&config_path))?;
        run_quiet(make(&["olddefconfig"]), "make ARCH=um olddefconfig")?;
        let final_config = fs::read_to_string(&config_path).map_err(io_err(&config_path))?;
        let missing = unmet_symbols(CONFIG_FRAGMENT, &final_config);
        if !missing.is_empty() {
            return Err(BuildError::Config { symbols: missing });
        }

        progress(Progress::Compiling { steps: 0 });
        let compile = make(&[&format!("-j{}", self.jobs.max(1))]);
        run_counting(compile, &mut |steps| {
            progress(Progress::Compiling { steps })
        })?;

        progress(Progress::Installing);
        let built = out.join("linux");
        let profile = Profile::read(&built).map_err(BuildError::Result)?;
        if profile.version.major != version.major || profile.version.minor != version.minor {
            tracing::warn!(
                "the tree's Makefile says {version}, the kernel says {}",
                profile.release
            );
        }
        let dest_dir = self.install_dir.join(&profile.release);
        fs::create_dir_all(&dest_dir).map_err(io_err(&dest_dir))?;
        let dest = dest_dir.join("linux");
        let tmp = dest_dir.join(".linux.tmp");
        fs::copy(&built, &tmp).map_err(io_err(&tmp))?;
        fs::rename(&tmp, &dest).map_err(io_err(&dest))?;
        let config_copy = dest_dir.join("config");
        fs::write(&config_copy, &final_config).map_err(io_err(&config_copy))?;
        let profile = Profile::read(&dest).map_err(BuildError::Result)?;

        let kept = if self.keep {
            Some(out)
        } else {
            fs::remove_dir_all(&work).map_err(io_err(&work))?;
            None
        };
        Ok(Built {
            profile,
            kept,
            elapsed: started.elapsed(),
        })
    }
}

/// A directory name for one source: the tarball's or tree's name, size and mtime, so that a
/// new version of the same file gets a fresh build.
fn source_id(source: &Path) -> Result<String, BuildError> {
    let meta = fs::metadata(source).map_err(|e| BuildError::Io {
        path: source.to_owned(),
        source: e,
    })?;
    let name: String = source
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "source".into())
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    Ok(format!("{name}-{}-{}", meta.ino(), meta.mtime()))
}

/// The compression of a tarball, from its name (`tar` flag), or `None` if it is not one.
fn tar_compression(path: &Path) -> Option<&'static str> {
    let name = path.file_name()?.to_str()?;
    [
        (".tar.xz", "-J"),
        (".txz", "-J"),
        (".tar.gz", "-z"),
        (".tgz", "-z"),
        (".tar.bz2", "-j"),
        (".tar.zst", "--zstd"),
        (".tar", ""),
    ]
    .iter()
    .find(|(suffix, _)| name.ends_with(suffix))
    .map(|(_, flag)| *flag)
}

/// Unpacks `tarball` into `work/src` (once: an earlier complete unpack is reused) and returns
/// the kernel tree inside it.
fn unpack(
    tarball: &Path,
    work: &Path,
    progress: &mut dyn FnMut(Progress),
) -> Result<PathBuf, BuildError> {
    let dest = work.join("src");
    let done = work.join("src.unpacked");
    if !done.exists() {
        progress(Progress::Unpacking);
        if dest.exists() {
            fs::remove_dir_all(&dest).map_err(|source| BuildError::Io {
                path: dest.clone(),
                source,
            })?;
        }
        fs::create_dir_all(&dest).map_err(|source| BuildError::Io {
            path: dest.clone(),
            source,
        })?;
        let flag = tar_compression(tarball).unwrap_or("");
        let mut tar = Command::new("tar");
        tar.arg("-x").arg("-C").arg(&dest).arg("--no-same-owner");
        if !flag.is_empty() {
            tar.arg(flag);
        }
        tar.arg("-f").arg(tarball);
        run_quiet(tar, &format!("tar -xf {}", tarball.display()))?;
        fs::write(&done, b"").map_err(|source| BuildError::Io {
            path: done.clone(),
            source,
        })?;
    }
    // A kernel tarball holds one top directory (linux-source-7.2/); accept a bare tree too.
    if dest.join("Makefile").is_file() {
        return Ok(dest);
    }
    let mut dirs = fs::read_dir(&dest)
        .map_err(|source| BuildError::Io {
            path: dest.clone(),
            source,
        })?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path());
    match (dirs.next(), dirs.next()) {
        (Some(tree), None) => Ok(tree),
        _ => Err(BuildError::NotSource {
            path: tarball.to_owned(),
            why: "the tarball does not hold one kernel source directory".into(),
        }),
    }
}

/// Checks that `tree` is a kernel source tree that can build a UML kernel, and returns its
/// version.
fn check_tree(tree: &Path) -> Result<Version, BuildError> {
    let not_source = |why: &str| BuildError::NotSource {
        path: tree.to_owned(),
        why: why.to_owned(),
    };
    // VERSION, PATCHLEVEL and SUBLEVEL are the Makefile's first lines: its head is enough.
    let mut head = Vec::new();
    fs::File::open(tree.join("Makefile"))
        .and_then(|f| io::Read::read_to_end(&mut io::Read::take(f, 8192), &mut head))
        .map_err(|_| not_source("it has no top-level Makefile"))?;
    let makefile = String::from_utf8_lossy(&head).into_owned();
    let field = |name: &str| {
        makefile.lines().find_map(|line| {
            let (key, value) = line.split_once('=')?;
            (key.trim() == name)
                .then(|| value.trim().parse::<u32>().ok())
                .flatten()
        })
    };
    let (Some(major), Some(minor)) = (field("VERSION"), field("PATCHLEVEL")) else {
        return Err(not_source(
            "its Makefile does not say VERSION and PATCHLEVEL: not a Linux tree",
        ));
    };
    let version = Version::new(major, minor, field("SUBLEVEL").unwrap_or(0));
    if !tree.join("arch/um/Kconfig").is_file() {
        return Err(not_source(
            "it has no arch/um: this tree cannot build a UML kernel",
        ));
    }
    if version < OLDEST {
        return Err(BuildError::TooOld {
            path: tree.to_owned(),
            version,
        });
    }
    Ok(version)
}

/// The fragment's lines that the final `.config` does not honour: a `CONFIG_X=v` line must be
/// there as it is; a `# CONFIG_X is not set` line must not be set to anything.
pub fn unmet_symbols(fragment: &str, config: &str) -> Vec<String> {
    let mut unmet = Vec::new();
    for line in fragment.lines().map(str::trim) {
        if let Some(symbol) = line
            .strip_prefix("# ")
            .and_then(|l| l.strip_suffix(" is not set"))
        {
            let set = config
                .lines()
                .any(|c| c.split_once('=').is_some_and(|(k, _)| k == symbol));
            if set {
                unmet.push(format!("{symbol} (must be off)"));
            }
        } else if line.starts_with("CONFIG_") && !config.lines().any(|c| c.trim() == line) {
            unmet.push(line.to_owned());
        }
    }
    unmet
}

/// Runs a short step, keeping its output for an error message.
fn run_quiet(mut command: Command, step: &str) -> Result<(), BuildError> {
    tracing::info!("{step}");
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|source| BuildError::Io {
            path: PathBuf::from(step.split_whitespace().next().unwrap_or(step)),
            source,
        })?;
    if output.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    Err(BuildError::Step {
        step: step.to_owned(),
        status: crate::launch::describe_status(output.status),
        output: last_lines(&text, 30),
    })
}

/// Runs the compile, counting kbuild's step lines (`  CC      kernel/fork.o`) as progress and
/// keeping the last lines of output for an error message.
fn run_counting(mut command: Command, on_step: &mut dyn FnMut(u64)) -> Result<(), BuildError> {
    let (reader, writer) = io::pipe().map_err(|source| BuildError::Io {
        path: PathBuf::from("pipe"),
        source,
    })?;
    let writer2 = writer.try_clone().map_err(|source| BuildError::Io {
        path: PathBuf::from("pipe"),
        source,
    })?;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(writer2)
        .spawn()
        .map_err(|source| BuildError::Io {
            path: PathBuf::from("make"),
            source,
        })?;
    // The command holds the pipe's write ends until it is dropped: drop it, or the read below
    // never sees the end.
    drop(command);
    let mut tail: VecDeque<String> = VecDeque::with_capacity(41);
    let mut steps = 0u64;
    for line in BufReader::new(reader).split(b'\n').map_while(Result::ok) {
        let line = String::from_utf8_lossy(&line).into_owned();
        let is_step = line.starts_with("  ")
            && line
                .split_whitespace()
                .next()
                .is_some_and(|w| w.chars().all(|c| c.is_ascii_uppercase() || c == '_'));
        if is_step {
            steps += 1;
            on_step(steps);
        }
        if tail.len() == 40 {
            tail.pop_front();
        }
        tail.push_back(line.chars().take(500).collect());
    }
    let status = child.wait().map_err(|source| BuildError::Io {
        path: PathBuf::from("make"),
        source,
    })?;
    if status.success() {
        return Ok(());
    }
    // The error is usually a few lines above make's own "Error" lines.
    Err(BuildError::Step {
        step: "make ARCH=um".into(),
        status: crate::launch::describe_status(status),
        output: tail.into_iter().collect::<Vec<_>>().join("\n"),
    })
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragment_lines_are_checked_both_ways() {
        let fragment =
            "# comment\nCONFIG_HOSTFS=y\nCONFIG_UML_NET_VECTOR=y\n# CONFIG_MODULES is not set\n";
        let good = "CONFIG_HOSTFS=y\nCONFIG_UML_NET_VECTOR=y\n# CONFIG_MODULES is not set\n";
        assert!(unmet_symbols(fragment, good).is_empty());
        let bad = "CONFIG_HOSTFS=y\n# CONFIG_UML_NET_VECTOR is not set\nCONFIG_MODULES=y\n";
        assert_eq!(
            unmet_symbols(fragment, bad),
            ["CONFIG_UML_NET_VECTOR=y", "CONFIG_MODULES (must be off)"]
        );
    }

    #[test]
    fn the_fragment_names_what_umlkit_needs() {
        for symbol in [
            "HOSTFS",
            "BLK_DEV_UBD",
            "MCONSOLE",
            "UML_NET_VECTOR",
            "UML_WATCHDOG",
            "MAGIC_SYSRQ",
            "EXT4_FS",
            "TMPFS",
            "DEVTMPFS",
            "SECCOMP",
            "VIRTIO_UML",
        ] {
            assert!(
                CONFIG_FRAGMENT
                    .lines()
                    .any(|l| l == format!("CONFIG_{symbol}=y")),
                "{symbol}"
            );
        }
    }

    #[test]
    fn trees_that_cannot_build_uml_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let err = check_tree(dir.path()).unwrap_err().to_string();
        assert!(err.contains("no top-level Makefile"), "{err}");
        fs::write(dir.path().join("Makefile"), "all:\n\techo hi\n").unwrap();
        let err = check_tree(dir.path()).unwrap_err().to_string();
        assert!(err.contains("VERSION and PATCHLEVEL"), "{err}");
        fs::write(
            dir.path().join("Makefile"),
            "VERSION = 5\nPATCHLEVEL = 10\nSUBLEVEL = 3\n",
        )
        .unwrap();
        let err = check_tree(dir.path()).unwrap_err().to_string();
        assert!(err.contains("no arch/um"), "{err}");
        fs::create_dir_all(dir.path().join("arch/um")).unwrap();
        fs::write(dir.path().join("arch/um/Kconfig"), "").unwrap();
        let err = check_tree(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("is Linux 5.10.3") && err.contains("6.1.0"),
            "{err}"
        );
        fs::write(dir.path().join("Makefile"), "VERSION = 7\nPATCHLEVEL = 2\n").unwrap();
        assert_eq!(check_tree(dir.path()).unwrap(), Version::new(7, 2, 0));
    }

    #[test]
    fn only_tarballs_and_trees_are_sources() {
        assert_eq!(
            tar_compression(Path::new("/usr/src/linux-source-7.2.tar.xz")),
            Some("-J")
        );
        assert_eq!(tar_compression(Path::new("linux.tar")), Some(""));
        assert_eq!(tar_compression(Path::new("bzImage")), None);
    }
}
