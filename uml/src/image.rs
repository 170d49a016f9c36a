//! `uml image create`: a bootable guest disk made as a normal user.
//!
//! Debian (and derivatives with the same tools): the root filesystem is made by the
//! distribution's own bootstrapper, `mmdebstrap`, as a tarball (its `unshare` mode for a normal
//! user, which maps the user's subordinate ids from /etc/subuid and /etc/subgid; its `root`
//! mode as root). The tarball becomes an ext4 image with `mke2fs -d`, which takes a directory:
//! for a normal user the tarball is extracted and `mke2fs` runs inside a user namespace that
//! maps the same subordinate ids (`unshare --map-auto --map-root-user`), so the files keep the
//! owners they have in the tarball (0, 42 for /etc/shadow, …). Device nodes are not extracted
//! (a user namespace cannot make them); the guest mounts devtmpfs.
//!
//! What the image gets on top of the distribution's minimal system, through mmdebstrap's
//! hooks (inside its namespace, never on a running guest's disk):
//! * systemd as init, udev, iproute2 (and openssh-server with an SSH key);
//! * `/etc/fstab` (`/dev/ubda /`), `/etc/hostname`, `/etc/hosts`;
//! * a getty on con0 (`getty@tty0.service`: UML's con0 is the guest's tty0, where
//!   `uml run --root` and `uml console NAME` attach); systemd's own getty on tty1 is con1;
//! * systemd-networkd on every Ethernet interface, whatever the kernel calls it (eth0 or
//!   vec0): DHCP, unless the kernel command line has `ip=…` (`uml run --net …,ip=ADDR/PREFIX`),
//!   which systemd-network-generator turns into a static configuration at boot;
//! * a root login: a password, an SSH key, or (neither given) no password on the console.
//!
//! Another distribution needs the same four things: a bootstrapper that runs without root and
//! writes a tarball or directory (Fedora: `dnf --installroot` under `unshare`; Arch: `pacstrap`
//! under `fakeroot`/`unshare`; Alpine: `apk --root … --initdb`), an init that starts a getty on
//! tty0, a network configuration that matches any Ethernet interface, and the same fstab.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Errors of making an image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{0}")]
    Invalid(String),
    #[error("{program} is not installed: {why} (install the Debian package {package})")]
    MissingTool {
        program: &'static str,
        package: &'static str,
        why: &'static str,
    },
    #[error(
        "{user} has no subordinate ids in /etc/subuid and /etc/subgid, which a rootless build maps \
         (add them, e.g. `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}` as root)"
    )]
    NoSubids { user: String },
    #[error(
        "no Debian mirror in the system's apt configuration (/etc/apt/sources.list, /etc/apt/sources.list.d); give one with --mirror URL"
    )]
    NoMirror,
    #[error("{step} failed ({status}){hint}")]
    Step {
        step: String,
        status: String,
        hint: String,
    },
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What to build.
#[derive(Debug, Clone)]
pub struct Recipe {
    /// Only `debian` so far.
    pub distro: String,
    /// The release, e.g. `bookworm`.
    pub suite: String,
    /// The image size as mke2fs takes it: a number with K, M, G or T.
    pub size: String,
    pub hostname: String,
    /// The root password; `None` with no key: root logs in on the console without one.
    pub root_password: Option<String>,
    /// An SSH public key for root (installs openssh-server).
    pub ssh_key: Option<String>,
    /// The archive; `None`: the one the system's apt uses ([`host_mirror`]).
    pub mirror: Option<String>,
    /// More packages.
    pub packages: Vec<String>,
}

/// The packages every image gets: systemd as init, udev for /dev, iproute2.
pub const BASE_PACKAGES: &[&str] = &["systemd-sysv", "udev", "iproute2"];

impl Recipe {
    /// Checks every field; the error names the bad one and what is accepted.
    ///
    /// # Errors
    /// [`ImageError::Invalid`].
    pub fn validate(&self) -> Result<(), ImageError> {
        let bad = |m: String| Err(ImageError::Invalid(m));
        if self.distro != "debian" {
            return bad(format!(
                "--distro {}: only debian can be built so far (see `man uml-image` for what another distribution needs)",
                self.distro
            ));
        }
        let word = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.+_".contains(&b))
        };
        if !word(&self.suite) {
            return bad(format!(
                "--suite {:?}: expected a release name like bookworm",
                self.suite
            ));
        }
        match size_bytes(&self.size) {
            Some(n) if n >= 512 << 20 => {}
            Some(_) => {
                return bad(format!(
                    "--size {}: too small; a Debian system needs at least 512M",
                    self.size
                ));
            }
            None => {
                return bad(format!(
                    "--size {:?}: expected a number with K, M, G or T, like 2G",
                    self.size
                ));
            }
        }
        if !word(&self.hostname) || self.hostname.contains(['+', '_']) {
            return bad(format!(
                "--hostname {:?}: expected 1-64 letters, digits, '-' or '.'",
                self.hostname
            ));
        }
        for p in &self.packages {
            if !word(p) {
                return bad(format!("--include {p:?}: not a package name"));
            }
        }
        if let Some(pw) = &self.root_password
            && (pw.is_empty() || pw.contains(['\n', '\0']))
        {
            return bad("--root-password: empty, or has a newline".into());
        }
        if let Some(key) = &self.ssh_key
            && (!key.starts_with("ssh-") && !key.starts_with("ecdsa-") && !key.starts_with("sk-"))
        {
            return bad("--ssh-key: the file is not an OpenSSH public key (ssh-ed25519 …, ssh-rsa …, ecdsa-…)".into());
        }
        if let Some(m) = &self.mirror
            && (!m.contains("://") || m.contains(char::is_whitespace))
        {
            return bad(format!(
                "--mirror {m:?}: expected a URL like http://HOST/debian"
            ));
        }
        Ok(())
    }

    /// The packages to install.
    pub fn packages(&self) -> Vec<String> {
        let mut p: Vec<String> = BASE_PACKAGES.iter().map(|s| (*s).to_owned()).collect();
        if self.ssh_key.is_some() {
            p.push("openssh-server".into());
        }
        p.extend(self.packages.iter().cloned());
        p
    }

    /// A key for caching images built from the same recipe (no secrets in it: the password
    /// and key are hashed).
    pub fn cache_key(&self) -> String {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (
            &self.distro,
            &self.suite,
            &self.size,
            &self.hostname,
            &self.root_password,
            &self.ssh_key,
            &self.packages,
            FILES_VERSION,
        )
            .hash(&mut h);
        format!("{}-{}-{:016x}", self.distro, self.suite, h.finish())
    }
}

/// Changes whenever the files an image gets change (part of [`Recipe::cache_key`]).
const FILES_VERSION: u32 = 1;

/// `2G` → bytes.
pub fn size_bytes(size: &str) -> Option<u64> {
    let (num, unit) = match size.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&size[..i], c.to_ascii_uppercase()),
        _ => (size, 'B'),
    };
    let n: u64 = num.parse().ok()?;
    let shift = match unit {
        'B' => 0,
        'K' => 10,
        'M' => 20,
        'G' => 30,
        'T' => 40,
        _ => return None,
    };
    n.checked_mul(1 << shift)
}

/// The Debian archive the system's apt uses: the first `deb` source (one-line or deb822) of
/// the host's own release (VERSION_CODENAME in /etc/os-release), else the first one with a
/// `main` component and no `-security` suite.
pub fn host_mirror() -> Option<String> {
    let codename = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("VERSION_CODENAME=")
                    .map(|v| v.trim_matches('"').to_owned())
            })
        })
        .unwrap_or_default();
    let mut texts = Vec::new();
    if let Ok(t) = std::fs::read_to_string("/etc/apt/sources.list") {
        texts.push((false, t));
    }
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut names: Vec<PathBuf> = dir.flatten().map(|e| e.path()).take(1000).collect();
        names.sort();
        for p in names {
            let deb822 = p.extension().is_some_and(|e| e == "sources");
            let list = p.extension().is_some_and(|e| e == "list");
            if (deb822 || list)
                && let Ok(t) = std::fs::read_to_string(&p)
            {
                texts.push((deb822, t));
            }
        }
    }
    let sources: Vec<Source> = texts
        .iter()
        .flat_map(|(deb822, t)| {
            if *deb822 {
                parse_deb822(t)
            } else {
                parse_one_line(t)
            }
        })
        .collect();
    let ok = |s: &&Source| s.components.iter().any(|c| c == "main") && s.uri.contains("://");
    sources
        .iter()
        .filter(ok)
        .find(|s| !codename.is_empty() && s.suites.contains(&codename))
        .or_else(|| {
            sources
                .iter()
                .filter(ok)
                .find(|s| s.suites.iter().all(|x| !x.contains("security")))
        })
        .map(|s| s.uri.clone())
}

#[derive(Debug, PartialEq)]
struct Source {
    uri: String,
    suites: Vec<String>,
    components: Vec<String>,
}

fn parse_one_line(text: &str) -> Vec<Source> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let mut words = line.split_whitespace().peekable();
        if words.next() != Some("deb") {
            continue;
        }
        // Options: `[arch=amd64 signed-by=…]`.
        if words.peek().is_some_and(|w| w.starts_with('[')) {
            for w in words.by_ref() {
                if w.ends_with(']') {
                    break;
                }
            }
        }
        let (Some(uri), Some(suite)) = (words.next(), words.next()) else {
            continue;
        };
        out.push(Source {
            uri: uri.to_owned(),
            suites: vec![suite.to_owned()],
            components: words.map(str::to_owned).collect(),
        });
    }
    out
}

fn parse_deb822(text: &str) -> Vec<Source> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let mut fields = std::collections::HashMap::new();
        for line in stanza.lines() {
            if line.starts_with('#') {
                continue;
            }
            if let Some((k, v)) = line.split_once(':') {
                fields.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
            }
        }
        let words = |k: &str| -> Vec<String> {
            fields
                .get(k)
                .map(|v| v.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default()
        };
        if !words("types").iter().any(|t| t == "deb")
            || fields.get("enabled").is_some_and(|e| e == "no")
        {
            continue;
        }
        for uri in words("uris") {
            out.push(Source {
                uri,
                suites: words("suites"),
                components: words("components"),
            });
        }
    }
    out
}

fn require(
    program: &'static str,
    package: &'static str,
    why: &'static str,
) -> Result<(), ImageError> {
    if crate::kernel::on_path(program).is_some() {
        Ok(())
    } else {
        Err(ImageError::MissingTool {
            program,
            package,
            why,
        })
    }
}

/// Whether `user` (or uid) has an entry in `file` (/etc/subuid, /etc/subgid).
fn has_subids(file: &str, user: &str, uid: u32) -> bool {
    std::fs::read_to_string(file).is_ok_and(|t| {
        t.lines().any(|l| {
            let first = l.split(':').next().unwrap_or("");
            first == user || first == uid.to_string()
        })
    })
}

/// Removes a directory tree when dropped; for a rootless build, inside a user namespace that
/// maps the subordinate ids its files belong to.
struct Scratch {
    dir: PathBuf,
    rootless: bool,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.rootless {
            let _ = Command::new("unshare")
                .args(["--map-auto", "--map-root-user", "rm", "-rf", "--"])
                .arg(&self.dir)
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run_step(step: &str, command: &mut Command, hint: &str) -> Result<(), ImageError> {
    tracing::info!(?command, "{step}");
    let status = command.status().map_err(|e| ImageError::Step {
        step: step.to_owned(),
        status: e.to_string(),
        hint: String::new(),
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(ImageError::Step {
            step: step.to_owned(),
            status: crate::launch::describe_status(status),
            hint: hint.to_owned(),
        })
    }
}

/// Builds the image `output` (which must not exist) from `recipe`, telling `progress` what it
/// does. The image is made under a temporary name next to `output` and renamed at the end, so
/// a failure leaves nothing behind.
///
/// # Errors
/// A bad recipe, a missing tool (naming its package), a failed step.
pub fn create(
    recipe: &Recipe,
    output: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<(), ImageError> {
    recipe.validate()?;
    if output.symlink_metadata().is_ok() {
        return Err(ImageError::Invalid(format!(
            "{} exists; choose another name or remove it",
            output.display()
        )));
    }
    let uid = nix::unistd::getuid();
    let rootless = !uid.is_root();
    require("mmdebstrap", "mmdebstrap", "it builds the Debian system")?;
    require("mke2fs", "e2fsprogs", "it makes the ext4 filesystem")?;
    require("tar", "tar", "it unpacks the system")?;
    if rootless {
        require(
            "newuidmap",
            "uidmap",
            "a rootless build maps the user's subordinate ids with it",
        )?;
        require(
            "unshare",
            "util-linux",
            "a rootless build runs in a user namespace",
        )?;
        let user = nix::unistd::User::from_uid(uid)
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_else(|| uid.to_string());
        if !has_subids("/etc/subuid", &user, uid.as_raw())
            || !has_subids("/etc/subgid", &user, uid.as_raw())
        {
            return Err(ImageError::NoSubids { user });
        }
    }
    let mirror = match &recipe.mirror {
        Some(m) => m.clone(),
        None => host_mirror().ok_or(ImageError::NoMirror)?,
    };

    let parent = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = output
        .file_name()
        .ok_or_else(|| ImageError::Invalid(format!("{}: not a file name", output.display())))?
        .to_string_lossy()
        .into_owned();
    // What an interrupted build (Ctrl-C, a kill) left next to the image: its owner is gone.
    let prefix = format!(".{name}.umlkit-");
    if let Ok(dir) = std::fs::read_dir(&parent) {
        for entry in dir.flatten().take(100_000) {
            let file_name = entry.file_name();
            let Some(pid) = file_name
                .to_str()
                .and_then(|n| n.strip_prefix(&prefix))
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            let is_dir = entry.path().symlink_metadata().is_ok_and(|m| m.is_dir());
            if is_dir && pid != std::process::id() && !crate::instance::pid_alive(pid) {
                progress(&format!(
                    "removing {}, left by an interrupted build",
                    entry.path().display()
                ));
                drop(Scratch {
                    dir: entry.path(),
                    rootless,
                });
            }
        }
    }
    let scratch_dir = parent.join(format!("{prefix}{}", std::process::id()));
    std::fs::create_dir(&scratch_dir).map_err(io_err(&scratch_dir))?;
    std::fs::set_permissions(&scratch_dir, std::fs::Permissions::from_mode(0o700))
        .map_err(io_err(&scratch_dir))?;
    let scratch = Scratch {
        dir: scratch_dir,
        rootless,
    };
    let overlay = scratch.dir.join("overlay");
    write_overlay(recipe, &overlay)?;
    let tarball = scratch.dir.join("root.tar");

    progress(&format!(
        "[1/2] {} {} from {mirror} with mmdebstrap ({})",
        recipe.distro,
        recipe.suite,
        if rootless {
            "rootless: unshare mode"
        } else {
            "root mode"
        }
    ));
    let packages = recipe.packages().join(",");
    let setup = format!(
        "chroot \"$1\" sh -e -c '{}'",
        customize_script(recipe).replace('\'', "'\\''")
    );
    let mut mm = Command::new("mmdebstrap");
    mm.arg(if rootless {
        "--mode=unshare"
    } else {
        "--mode=root"
    })
    .arg("--variant=minbase")
    .arg(format!("--include={packages}"))
    .arg(format!("--customize-hook=sync-in {} /", overlay.display()))
    .arg(format!("--customize-hook={setup}"))
    .arg(&recipe.suite)
    .arg(&tarball)
    .arg(&mirror)
    .stdin(Stdio::null());
    run_step(
        "mmdebstrap",
        &mut mm,
        &format!(
            "; its messages above say why (a suite the mirror {mirror} lacks, no network, a package name)"
        ),
    )?;

    progress(&format!(
        "[2/2] ext4 image of {} ({})",
        recipe.size,
        if rootless {
            "mke2fs -d in a user namespace that keeps the files' owners"
        } else {
            "mke2fs -d"
        }
    ));
    let partial = scratch.dir.join("image");
    let script = "set -e; mkdir \"$1\"; tar -C \"$1\" --numeric-owner --exclude='./dev/*' -xpf \"$2\"; \
                  mke2fs -q -F -t ext4 -L root -d \"$1\" \"$3\" \"$4\"; rm -rf \"$1\"";
    let mut fs_cmd = if rootless {
        let mut c = Command::new("unshare");
        c.args(["--map-auto", "--map-root-user", "sh", "-c", script, "sh"]);
        c
    } else {
        let mut c = Command::new("sh");
        c.args(["-c", script, "sh"]);
        c
    };
    fs_cmd
        .arg(scratch.dir.join("root"))
        .arg(&tarball)
        .arg(&partial)
        .arg(&recipe.size)
        .stdin(Stdio::null());
    run_step("making the ext4 filesystem", &mut fs_cmd, "")?;
    std::fs::rename(&partial, output).map_err(io_err(output))?;
    Ok(())
}

/// The files the image gets, in a directory that mmdebstrap copies over the new system.
fn write_overlay(recipe: &Recipe, overlay: &Path) -> Result<(), ImageError> {
    let put = |rel: &str, text: &str, mode: u32| -> Result<(), ImageError> {
        let path = overlay.join(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .map_err(io_err(&path))?;
        f.write_all(text.as_bytes()).map_err(io_err(&path))
    };
    use std::os::unix::fs::OpenOptionsExt;
    put(
        "etc/fstab",
        "# <file system> <mount point> <type> <options> <dump> <pass>\n/dev/ubda / ext4 defaults 0 1\n",
        0o644,
    )?;
    put("etc/hostname", &format!("{}\n", recipe.hostname), 0o644)?;
    put(
        "etc/hosts",
        &format!(
            "127.0.0.1\tlocalhost\n127.0.1.1\t{}\n::1\tlocalhost ip6-localhost ip6-loopback\n",
            recipe.hostname
        ),
        0o644,
    )?;
    put(
        "etc/systemd/network/99-umlkit-ethernet.network",
        "# Every Ethernet interface, whatever the kernel calls it (eth0: legacy driver, vec0:\n\
         # vector driver). An ip= word on the kernel command line (uml run --net SPEC,ip=…)\n\
         # becomes /run/systemd/network/90-IFACE.network, which comes first.\n\
         [Match]\nType=ether\nKind=!*\n\n[Network]\nDHCP=yes\n",
        0o644,
    )?;
    if let Some(pw) = &recipe.root_password {
        put("root/.umlkit-password", &format!("root:{pw}\n"), 0o600)?;
    }
    if let Some(key) = &recipe.ssh_key {
        put(
            "root/.ssh/authorized_keys",
            &format!("{}\n", key.trim()),
            0o600,
        )?;
        std::fs::set_permissions(
            overlay.join("root/.ssh"),
            std::fs::Permissions::from_mode(0o700),
        )
        .map_err(io_err(overlay))?;
    }
    std::fs::set_permissions(
        overlay.join("root").as_path(),
        std::fs::Permissions::from_mode(0o700),
    )
    .or_else(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Ok(())
        } else {
            Err(e)
        }
    })
    .map_err(io_err(overlay))?;
    Ok(())
}

/// What runs in the new system (chroot) after the overlay is copied in.
fn customize_script(recipe: &Recipe) -> String {
    let mut s = String::from(
        "chown 0:0 /etc /etc/systemd /root; chmod 0700 /root\n\
         chown -R 0:0 /etc/fstab /etc/hostname /etc/hosts /etc/systemd/network\n\
         systemctl enable getty@tty0.service systemd-networkd.service systemd-network-generator.service\n\
         systemctl disable systemd-networkd-wait-online.service\n",
    );
    if recipe.root_password.is_some() {
        s.push_str("chown 0:0 /root/.umlkit-password; chpasswd < /root/.umlkit-password; rm -f /root/.umlkit-password\n");
    } else if recipe.ssh_key.is_none() {
        s.push_str("passwd -d root >/dev/null\n");
    }
    if recipe.ssh_key.is_some() {
        s.push_str("chown -R 0:0 /root/.ssh\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipe() -> Recipe {
        Recipe {
            distro: "debian".into(),
            suite: "bookworm".into(),
            size: "2G".into(),
            hostname: "web1".into(),
            root_password: None,
            ssh_key: None,
            mirror: None,
            packages: vec![],
        }
    }

    #[test]
    fn recipes_are_checked_field_by_field() {
        assert!(recipe().validate().is_ok());
        let with = |f: &dyn Fn(&mut Recipe)| {
            let mut r = recipe();
            f(&mut r);
            r.validate().unwrap_err().to_string()
        };
        assert!(with(&|r| r.distro = "fedora".into()).contains("--distro fedora"));
        assert!(with(&|r| r.size = "100M".into()).contains("at least 512M"));
        assert!(with(&|r| r.size = "2X".into()).contains("--size"));
        assert!(with(&|r| r.suite = "a b".into()).contains("--suite"));
        assert!(with(&|r| r.hostname = "a_b".into()).contains("--hostname"));
        assert!(with(&|r| r.ssh_key = Some("hello".into())).contains("--ssh-key"));
        assert!(with(&|r| r.mirror = Some("deb.example".into())).contains("--mirror"));
        assert_eq!(size_bytes("2G"), Some(2 << 30));
        assert_eq!(size_bytes("512m"), Some(512 << 20));
        assert_eq!(size_bytes("G"), None);
    }

    #[test]
    fn apt_sources_in_both_formats_give_their_archives() {
        let one = parse_one_line(
            "# x\ndeb [arch=amd64 signed-by=/k.gpg] http://a.example/debian bookworm main contrib\n\
             deb-src http://b.example/debian bookworm main\n",
        );
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].uri, "http://a.example/debian");
        assert_eq!(one[0].components, ["main", "contrib"]);
        let d = parse_deb822(
            "Types: deb\nURIs: http://c.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n\
             Types: deb\nURIs: http://c.example/debian-security\nSuites: bookworm-security\nComponents: main\n",
        );
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].suites, ["bookworm", "bookworm-updates"]);
        assert_eq!(d[1].uri, "http://c.example/debian-security");
    }

    #[test]
    fn the_overlay_has_fstab_hostname_network_and_the_login_with_private_modes() {
        use std::os::unix::fs::MetadataExt;
        let tmp = std::env::temp_dir().join(format!("umlkit-overlay-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let mut r = recipe();
        r.root_password = Some("pw".into());
        r.ssh_key = Some("ssh-ed25519 AAAA me@host\n".into());
        write_overlay(&r, &tmp).unwrap();
        let read = |p: &str| std::fs::read_to_string(tmp.join(p)).unwrap();
        assert!(read("etc/fstab").contains("/dev/ubda / ext4"));
        assert_eq!(read("etc/hostname"), "web1\n");
        let network = read("etc/systemd/network/99-umlkit-ethernet.network");
        assert!(network.contains("Type=ether") && network.contains("Kind=!*"));
        assert_eq!(
            read("root/.ssh/authorized_keys"),
            "ssh-ed25519 AAAA me@host\n"
        );
        let mode = |p: &str| std::fs::metadata(tmp.join(p)).unwrap().mode() & 0o777;
        assert_eq!(mode("root/.umlkit-password"), 0o600);
        assert_eq!(mode("root/.ssh/authorized_keys"), 0o600);
        assert_eq!(mode("root/.ssh"), 0o700);
        assert_eq!(mode("root"), 0o700);
        let script = customize_script(&r);
        assert!(script.contains("chpasswd < /root/.umlkit-password; rm -f /root/.umlkit-password"));
        assert!(script.contains("getty@tty0.service"));
        assert!(!script.contains("passwd -d"));
        assert!(r.packages().contains(&"openssh-server".to_owned()));
        // Neither a password nor a key: root logs in on the console without one.
        assert!(customize_script(&recipe()).contains("passwd -d root"));
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn cache_keys_follow_the_recipe() {
        let a = recipe();
        let mut b = recipe();
        b.root_password = Some("x".into());
        assert_eq!(a.cache_key(), recipe().cache_key());
        assert_ne!(a.cache_key(), b.cache_key());
        assert!(!b.cache_key().contains('x') || b.cache_key().starts_with("debian"));
    }
}
