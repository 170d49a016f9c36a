//! `umld`: serves every UML guest of a uml_dir on D-Bus as `org.umlkit.uml1`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

/// The D-Bus service for User-mode Linux guests (org.umlkit.uml1).
#[derive(Debug, Parser)]
#[command(name = "umld", version)]
struct Args {
    /// The uml_dir to watch and launch guests in [default: ~/.uml].
    #[arg(long, value_name = "DIR")]
    uml_dir: Option<PathBuf>,
    /// Serve on the system bus instead of the session bus: callers other than root are
    /// authorised per call through polkit (see ACCESS).
    #[arg(long, conflicts_with = "address")]
    system: bool,
    /// Serve on the bus at this D-Bus address.
    #[arg(long, value_name = "ADDRESS")]
    address: Option<String>,
    /// Where to bind the notify socket [default: $XDG_RUNTIME_DIR/umlkit/umld.notify].
    #[arg(long, value_name = "PATH")]
    notify_socket: Option<PathBuf>,
    /// The UML kernel that Launch runs: a path, a release built by `uml kernel build` (7.2), or
    /// a command on PATH [default: the default of `uml kernel use`, else `linux` on PATH, else
    /// the newest built kernel]
    #[arg(long, value_name = "KERNEL", env = "UML_KERNEL")]
    kernel: Option<String>,
    /// How long a guest may take to answer one mconsole request, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 3000)]
    mconsole_timeout_ms: u64,
    /// How long a machine whose kernel exited stays on the bus (State exited or crashed,
    /// ExitStatus readable) before MachineRemoved, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    keep_exited: u64,
}

/// What umld's arguments complete to beyond clap's own completion, by clap argument id.
const COMPLETION_HOOKS: &[(&str, uml::options::complete::Hook)] =
    &[("uml_dir", uml::options::complete::Hook::UmlDir)];

fn main() -> anyhow::Result<()> {
    // The init of the guests umld launches (`umld __guest-init CONFIG`, see uml::guest_init).
    uml::guest_init::serve_if_asked();
    // `umld generate all --out-dir DIR` (scripts/generate) writes umld(8), org.umlkit.uml1(5)
    // and the umld completions.
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv.len() == 5 && argv[1] == "generate" && argv[2] == "all" && argv[3] == "--out-dir" {
        return generate(std::path::Path::new(&argv[4]));
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("UMLD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal: not in the journal, a file or a pipe.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    let uml_dir = match args.uml_dir {
        Some(d) => d,
        None => uml::instance::default_uml_dir()?,
    };
    let uml_dir = std::path::absolute(&uml_dir)
        .with_context(|| format!("cannot resolve {}", uml_dir.display()))?;
    let config = umld::Config {
        uml_dir,
        notify_socket: args
            .notify_socket
            .unwrap_or_else(uml::launch::forward_socket),
        kernel: args.kernel,
        mconsole_timeout: Duration::from_millis(args.mconsole_timeout_ms.max(1)),
        poll: Duration::from_secs(1),
        keep_exited: Duration::from_secs(args.keep_exited),
    };
    let bus = match (args.system, args.address) {
        (true, _) => umld::Bus::System,
        (false, Some(a)) => umld::Bus::Address(a),
        (false, None) => umld::Bus::Session,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(umld::serve(config, bus))?;
    Ok(())
}

fn generate(dir: &std::path::Path) -> anyhow::Result<()> {
    use clap::CommandFactory;
    use uml::options::complete;
    use uml::options::man::{self, Block, Meta, Section};
    let meta = Meta::umlkit(env!("CARGO_PKG_VERSION"));
    let item = |a: &str, b: &str| Block::Item(a.to_owned(), b.to_owned());
    let sections = vec![
        Section {
            title: "FILES",
            blocks: vec![
                item(
                    "~/.uml",
                    "The uml_dir watched by default; every running guest in it gets an object.",
                ),
                item(
                    "$XDG_RUNTIME_DIR/umlkit/umld.notify",
                    "The notify socket that guests umld launches report boot, panic and user messages to.",
                ),
                item(
                    "/usr/share/dbus-1/services/org.umlkit.uml1.service",
                    "D-Bus activation of the service.",
                ),
                item(
                    "/usr/lib/systemd/user/umld.service",
                    "The systemd user unit (Type=dbus).",
                ),
                item(
                    "/usr/share/doc/umlkit/examples/",
                    "The example desktop clients umld-gjs.js (GJS) and umld-gio.py (Python GIO).",
                ),
                item(
                    "/usr/share/dbus-1/system.d/org.umlkit.uml1.conf",
                    "The system bus policy for umld --system: root owns the name, anyone may call it (see ACCESS).",
                ),
                item(
                    "/usr/share/polkit-1/actions/org.umlkit.uml1.policy",
                    "The polkit actions org.umlkit.uml1.launch and org.umlkit.uml1.manage that umld --system checks per call.",
                ),
                item(
                    "/tmp/umlkit-UID/umld.notify",
                    "The notify socket when XDG_RUNTIME_DIR is unset; umld refuses a directory there that is a symlink, another user's, or writable by others.",
                ),
            ],
        },
        umld::manpage::access(),
        Section {
            title: "ENVIRONMENT",
            blocks: vec![
                item(
                    "UML_KERNEL",
                    "The kernel Launch runs (a path, a release built by uml kernel build, or a command) instead of the default kernel.",
                ),
                item(
                    "UMLD_LOG",
                    "Diagnostics filter, for example debug (default info).",
                ),
            ],
        },
        Section {
            title: "EXAMPLES",
            blocks: vec![
                Block::Para(
                    "A desktop program talks to umld the way the two example clients do. Both are \
                     installed under /usr/share/doc/umlkit/examples/ and tested against the service \
                     with real guests: umld-gjs.js (GJS, written as a GNOME application is: \
                     Gio.DBusObjectManagerClient, cached proxies, g-properties-changed) and \
                     umld-gio.py (Python GIO, python3-gi). Each lists the guests, follows them live, \
                     launches one with typed options, pauses, resumes and shuts it down, and opens \
                     a guest's console through OpenConsole. Read them as the starting point of a \
                     client; run them with:"
                        .into(),
                ),
                Block::Code("gjs /usr/share/doc/umlkit/examples/umld-gjs.js watch".into()),
                Block::Code(
                    "python3 /usr/share/doc/umlkit/examples/umld-gio.py launch --umid web1 --mem 256M"
                        .into(),
                ),
                Block::Code(
                    "gjs /usr/share/doc/umlkit/examples/umld-gjs.js console web1 con0 --send 'echo hi' --expect hi"
                        .into(),
                ),
                Block::Code(
                    "python3 /usr/share/doc/umlkit/examples/umld-gio.py shutdown web1".into(),
                ),
            ],
        },
        Section {
            title: "SEE ALSO",
            blocks: vec![Block::Para(
                "org.umlkit.uml1(5), uml(1), busctl(1), gdbus(1), gjs(1)".into(),
            )],
        },
    ];
    let write = |path: std::path::PathBuf, text: &str| -> anyhow::Result<()> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    };
    for page in man::command_pages(Args::command(), "8", &meta, &sections) {
        write(dir.join("man").join(&page.file_name), &page.text)?;
    }
    let api = man::custom_page(
        "org.umlkit.uml1",
        "5",
        "the D-Bus API of umld for User-mode Linux guests",
        &meta,
        &umld::manpage::sections(),
    );
    write(dir.join("man").join(&api.file_name), &api.text)?;
    for script in complete::command_scripts(Args::command(), "umld", COMPLETION_HOOKS)? {
        write(dir.join("completions").join(&script.path), &script.text)?;
    }
    Ok(())
}
