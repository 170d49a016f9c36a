//! `uml image create`: a bootable guest disk in one command, as a normal user.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Subcommand;

use super::Global;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: ImageCommand,
}

#[derive(Debug, Subcommand)]
enum ImageCommand {
    /// Build a bootable guest disk image, without root
    ///
    /// An ext4 image made with the distribution's own bootstrapper (Debian: mmdebstrap), with
    /// systemd, a getty on con0, an fstab (/dev/ubda as /), the hostname, a root login, and
    /// systemd-networkd on every Ethernet interface (DHCP, or the address that
    /// `uml run --net SPEC,ip=ADDR/PREFIX` gives). Boot it with `uml run --root FILE`.
    #[command(after_help = "Examples:\n  \
        uml image create --size 2G web1.img\n  \
        uml image create --suite bookworm --ssh-key ~/.ssh/id_ed25519.pub web1.img\n  \
        uml run --detach --umid web1 --root web1.img && uml console web1\n\n\
        As a normal user it needs the Debian packages mmdebstrap and uidmap and subordinate ids \
        in /etc/subuid and /etc/subgid (Debian's useradd adds them). The mirror is the one the \
        system's apt uses unless --mirror is given.\n\n\
        Another distribution would need: a bootstrapper that runs without root and writes a \
        tarball or directory (Fedora: dnf --installroot in a user namespace; Arch: pacstrap; \
        Alpine: apk --root --initdb), an init with a getty on tty0 (UML's con0), a network \
        configuration that matches any Ethernet interface (eth0 or vec0), and the same fstab \
        (/dev/ubda as /).")]
    Create {
        /// The distribution (only debian so far)
        #[arg(long, default_value = "debian")]
        distro: String,
        /// The release
        #[arg(long, default_value = "bookworm")]
        suite: String,
        /// The image's size (a sparse file): a number with K, M, G or T
        #[arg(long, default_value = "2G")]
        size: String,
        /// The hostname written to the image [default: the file name without its extension];
        /// `uml run --root` sets the umid at boot unless told otherwise
        #[arg(long)]
        hostname: Option<String>,
        /// Root's password; `-` reads it from the first line of stdin (a password on the
        /// command line is visible to other users). Without this and --ssh-key, root logs in
        /// on the console without a password
        #[arg(long, value_name = "PASSWORD")]
        root_password: Option<String>,
        /// An OpenSSH public key file whose key root accepts (installs openssh-server)
        #[arg(long, value_name = "FILE")]
        ssh_key: Option<PathBuf>,
        /// The archive to install from [default: the Debian mirror in the system's apt
        /// configuration]
        #[arg(long, value_name = "URL")]
        mirror: Option<String>,
        /// More packages to install (repeatable, or comma-separated)
        #[arg(long = "include", value_name = "PACKAGE", value_delimiter = ',')]
        packages: Vec<String>,
        /// The image file to create (it must not exist)
        file: PathBuf,
    },
}

pub fn run(args: Args, _global: &Global) -> anyhow::Result<ExitCode> {
    let ImageCommand::Create {
        distro,
        suite,
        size,
        hostname,
        root_password,
        ssh_key,
        mirror,
        packages,
        file,
    } = args.command;
    let hostname = match hostname {
        Some(h) => h,
        None => file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "uml".into()),
    };
    let root_password = match root_password.as_deref() {
        Some("-") => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("cannot read the root password from stdin")?;
            Some(line.trim_end_matches(['\n', '\r']).to_owned())
        }
        _ => root_password,
    };
    let ssh_key = match &ssh_key {
        Some(path) => {
            let meta =
                std::fs::metadata(path).with_context(|| format!("--ssh-key {}", path.display()))?;
            if !meta.is_file() || meta.len() > 16 * 1024 {
                anyhow::bail!(
                    "--ssh-key {}: expected a public key file (id_ed25519.pub), at most 16 KiB",
                    path.display()
                );
            }
            Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("--ssh-key {}", path.display()))?,
            )
        }
        None => None,
    };
    let recipe = uml::image::Recipe {
        distro,
        suite,
        size,
        hostname,
        root_password,
        ssh_key,
        mirror,
        packages,
    };
    let start = Instant::now();
    // Ctrl-C (or a SIGTERM) reaches the bootstrapper, which stops; the build then fails and
    // removes its scratch directory, instead of this process dying and leaving it.
    let _caught = CatchInterrupt::install();
    let built = uml::image::create(&recipe, &file, &mut |step| eprintln!("uml: {step}"));
    if built.is_err() && INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
        anyhow::bail!(
            "interrupted; {} was not made and nothing was left behind",
            file.display()
        );
    }
    built?;
    eprintln!(
        "uml: made {} in {:.1} s; boot it with `uml run --root {}`",
        file.display(),
        start.elapsed().as_secs_f64(),
        file.display()
    );
    Ok(ExitCode::SUCCESS)
}

static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn note_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// A handler for SIGINT and SIGTERM that only notes the signal, while it lives. Unlike an
/// ignored signal, a handled one is reset to the default in the programs started meanwhile
/// (exec), so they stop on it.
struct CatchInterrupt(Vec<(nix::sys::signal::Signal, nix::sys::signal::SigAction)>);

impl CatchInterrupt {
    fn install() -> CatchInterrupt {
        use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
        let action = SigAction::new(
            SigHandler::Handler(note_interrupt),
            SaFlags::SA_RESTART,
            SigSet::empty(),
        );
        let mut old = Vec::new();
        for sig in [Signal::SIGINT, Signal::SIGTERM] {
            // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
            if let Ok(prev) = unsafe { sigaction(sig, &action) } {
                old.push((sig, prev));
            }
        }
        CatchInterrupt(old)
    }
}

impl Drop for CatchInterrupt {
    fn drop(&mut self) {
        for (sig, prev) in &self.0 {
            // SAFETY: restores the disposition that was in place before install().
            let _ = unsafe { nix::sys::signal::sigaction(*sig, prev) };
        }
    }
}
