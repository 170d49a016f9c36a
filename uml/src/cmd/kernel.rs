//! `uml kernel info|list|build`: which kernel runs, which are built, and building one.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use uml::kernel::{self, Profile, build};

use super::Global;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Sub,
}

#[derive(Debug, clap::Subcommand)]
pub enum Sub {
    /// Print the profile of a kernel: its release and the config symbols umlkit uses
    Info(InfoArgs),
    /// List the kernels built by `uml kernel build`, and say which one runs by default
    List(ListArgs),
    /// Build a UML kernel from a kernel source tree or tarball and install it for umlkit
    Build(BuildArgs),
    /// Make a kernel the default of every umlkit command (when --kernel and $UML_KERNEL are
    /// not given)
    Use(UseArgs),
}

#[derive(Debug, clap::Args)]
pub struct UseArgs {
    /// A path, a release or series built by `uml kernel build` (7.2), or a command on PATH
    #[arg(value_name = "KERNEL")]
    pub kernel: String,
}

#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// The kernel: a path, a release or series built by `uml kernel build` (7.2), or a
    /// command on PATH [default: $UML_KERNEL, else `linux` on PATH, else the newest built one]
    #[arg(value_name = "KERNEL")]
    pub kernel: Option<String>,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Example, on Debian:\n  \
    apt-get install linux-source-7.2 gcc make flex bison bc\n  \
    uml kernel build /usr/src/linux-source-7.2.tar.xz\n  \
    uml run --kernel 7.2 -- uname -r")]
pub struct BuildArgs {
    /// A kernel source tree, or a tarball of one (.tar.xz, .tar.gz, .tar.bz2, .tar.zst, .tar)
    #[arg(value_name = "SOURCE")]
    pub source: PathBuf,
    /// Parallel compile jobs [default: the number of CPUs]
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,
    /// Keep the unpacked source and the objects, so that the next build of the same source
    /// only recompiles what changed
    #[arg(long)]
    pub keep_build: bool,
    /// Where to unpack and compile [default: $XDG_CACHE_HOME/umlkit/kernel-build]
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
}

pub fn run(args: Args, _global: &Global) -> anyhow::Result<ExitCode> {
    match args.command {
        Sub::Info(a) => info(a),
        Sub::List(a) => list(a),
        Sub::Build(a) => build_kernel(a),
        Sub::Use(a) => use_kernel(a),
    }
}

fn info(args: InfoArgs) -> anyhow::Result<ExitCode> {
    let path = kernel::resolve(args.kernel.as_deref())?;
    let profile = Profile::read(&path)?;
    if args.json {
        // The kernel completions read this form line by line (`__uk_by_uml`,
        // uml/src/options/complete/engine.rs): the version's and the config's fields one per
        // line, indented by four spaces. tests/completion.rs checks that they agree.
        println!("{}", serde_json::to_string_pretty(&profile)?);
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", describe(&profile));
    Ok(ExitCode::SUCCESS)
}

/// The profile as text: what the kernel is and what it can do for umlkit.
pub fn describe(profile: &Profile) -> String {
    let mut out = String::new();
    let yes = |b: bool| if b { "yes" } else { "no" };
    out.push_str(&format!("kernel:     {}\n", profile.path.display()));
    out.push_str(&format!("release:    {}\n", profile.release));
    match &profile.config {
        Some(_) => {}
        None => out.push_str(&format!(
            "config:     unknown ({}); judged by the version\n",
            profile.config_note.as_deref().unwrap_or("not read")
        )),
    }
    let legacy: Vec<&str> = [
        ("daemon", "UML_NET_DAEMON"),
        ("mcast", "UML_NET_MCAST"),
        ("tuntap", "UML_NET_TUNTAP"),
        ("vde", "UML_NET_VDE"),
        ("slirp", "UML_NET_SLIRP"),
        ("pcap", "UML_NET_PCAP"),
        ("ethertap", "UML_NET_ETHERTAP"),
        ("slip", "UML_NET_SLIP"),
    ]
    .into_iter()
    .filter(|(_, s)| profile.has(s))
    .map(|(n, _)| n)
    .collect();
    out.push_str(&format!(
        "eth<n>=:    {}\n",
        if legacy.is_empty() {
            "no (no legacy network transports)".to_owned()
        } else {
            legacy.join(", ")
        }
    ));
    out.push_str(&format!(
        "vec<n>:     {}\n",
        yes(profile.has("UML_NET_VECTOR"))
    ));
    for (label, symbol) in [
        ("hostfs:     ", "HOSTFS"),
        ("ubd:        ", "BLK_DEV_UBD"),
        ("mconsole:   ", "MCONSOLE"),
        ("sysrq:      ", "MAGIC_SYSRQ"),
        ("watchdog:   ", "UML_WATCHDOG"),
        ("seccomp:    ", "SECCOMP"),
        ("virtio_uml: ", "VIRTIO_UML"),
    ] {
        out.push_str(&format!("{label}{}\n", yes(profile.has(symbol))));
    }
    out
}

fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let installed = kernel::installed();
    let default = kernel::resolve(None).ok();
    if args.json {
        let rows: Vec<_> = installed
            .iter()
            .map(|k| {
                serde_json::json!({
                    "release": k.release,
                    "path": k.path,
                    "default": default.as_deref() == Some(k.path.as_path()),
                })
            })
            .collect();
        println!("{}", serde_json::json!({"default": default, "built": rows}));
        return Ok(ExitCode::SUCCESS);
    }
    match &default {
        Some(path) => println!("default: {}", path.display()),
        None => println!("default: none (no kernel found)"),
    }
    if installed.is_empty() {
        let dir = kernel::kernels_dir().map_or_else(String::new, |d| d.display().to_string());
        println!("built:   none in {dir}");
    }
    for k in &installed {
        println!("built:   {:<10} {}", k.release, k.path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn build_kernel(args: BuildArgs) -> anyhow::Result<ExitCode> {
    let mut job = build::Build::new(&args.source)?;
    if let Some(jobs) = args.jobs {
        job.jobs = jobs.max(1);
    }
    if let Some(dir) = args.work_dir {
        job.work_dir = dir;
    }
    job.keep = args.keep_build;
    job.preflight()?;
    let tty = std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut last_line = Instant::now();
    let mut stderr = std::io::stderr();
    let mut progress = |p: build::Progress| {
        let elapsed = started.elapsed().as_secs();
        let text = match &p {
            build::Progress::Unpacking => format!("unpacking {}", args.source.display()),
            build::Progress::Configuring => "configuring (defconfig + umlkit's options)".to_owned(),
            build::Progress::Compiling { steps } => {
                format!(
                    "compiling: {steps} steps, {}m{:02}s",
                    elapsed / 60,
                    elapsed % 60
                )
            }
            build::Progress::Installing => "installing".to_owned(),
        };
        let is_step = matches!(p, build::Progress::Compiling { steps } if steps > 0);
        if tty {
            let _ = write!(stderr, "\r\x1b[K{text}");
            if !is_step {
                let _ = writeln!(stderr);
            }
        } else if !is_step || last_line.elapsed().as_secs() >= 30 {
            let _ = writeln!(stderr, "{text}");
            last_line = Instant::now();
        }
    };
    let built = job.run(&mut progress)?;
    if tty {
        eprintln!();
    }
    let secs = built.elapsed.as_secs();
    println!(
        "built {} in {}m{:02}s: {}",
        built.profile.release,
        secs / 60,
        secs % 60,
        built.profile.path.display()
    );
    if let Some(kept) = built.kept {
        println!("build kept in {}", kept.display());
    }
    println!(
        "run it with: uml run --kernel {} (or UML_KERNEL={})",
        built.profile.series(),
        built.profile.path.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn use_kernel(args: UseArgs) -> anyhow::Result<ExitCode> {
    let profile = kernel::set_default(&args.kernel)?;
    println!(
        "default kernel: {} ({})",
        profile.path.display(),
        profile.release
    );
    if let Some(file) = kernel::default_file() {
        println!("written to {}", file.display());
    }
    Ok(ExitCode::SUCCESS)
}
