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
    /// Serve on the system bus instead of the session bus.
    #[arg(long, conflicts_with = "address")]
    system: bool,
    /// Serve on the bus at this D-Bus address.
    #[arg(long, value_name = "ADDRESS")]
    address: Option<String>,
    /// Where to bind the notify socket [default: $XDG_RUNTIME_DIR/umlkit/umld.notify].
    #[arg(long, value_name = "PATH")]
    notify_socket: Option<PathBuf>,
    /// The UML kernel that Launch runs.
    #[arg(long, value_name = "PATH", env = "UML_KERNEL", default_value = "linux")]
    kernel: PathBuf,
    /// How long a guest may take to answer one mconsole request, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 3000)]
    mconsole_timeout_ms: u64,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("UMLD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
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
            .unwrap_or_else(uml::machine::service_notify_socket),
        kernel: args.kernel,
        mconsole_timeout: Duration::from_millis(args.mconsole_timeout_ms.max(1)),
        poll: Duration::from_secs(1),
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
