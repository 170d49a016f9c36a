//! `uml uplink`: join a switch's guests to a guest on another host, over an l2tpv3 tunnel.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};

use super::Global;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples (host A at 198.51.100.1, host B at 198.51.100.2):\n  \
    hostA$ uml switch --bess /tmp/lab.bess &\n  \
    hostA$ uml uplink /tmp/lab.bess l2tpv3:198.51.100.1:198.51.100.2:session=7\n  \
    hostB$ uml run --net l2tpv3:198.51.100.2:198.51.100.1:session=7\n\
    Every guest on the switch on host A then shares an Ethernet with the guest on host B.\n\
    A named switch (uml run --net switch:NAME) has its bess socket in <uml_dir>/.umlkit."
)]
pub struct Args {
    /// The switch's bess socket (`uml switch --bess BESS_SOCKET`)
    #[arg(value_name = "BESS_SOCKET")]
    pub bess: PathBuf,
    /// The tunnel, as `uml run --net` spells it: l2tpv3:LOCAL:REMOTE[:OPTION,…], over UDP. The
    /// guest at the other end uses the mirror of it (REMOTE:LOCAL, the same options)
    #[arg(value_name = "TUNNEL")]
    pub tunnel: String,
}

/// Relays until SIGINT, SIGTERM or SIGHUP, or until the switch goes away.
pub fn run(args: Args, _global: &Global) -> anyhow::Result<ExitCode> {
    let tunnel = match uml::net::Spec::parse(&args.tunnel)? {
        uml::net::Spec::L2tpv3(t) => t,
        other => bail!(
            "{}: an uplink is an l2tpv3 tunnel over UDP (l2tpv3:LOCAL:REMOTE[:OPTION,…]), not {}",
            args.tunnel,
            other.kind()
        ),
    };
    use nix::sys::signal::{SigSet, Signal};
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGHUP);
    // Blocked before the relay thread starts, so that only the wait below takes them.
    signals
        .thread_block()
        .context("cannot block SIGINT/SIGTERM")?;
    let uplink = uml::net::uplink::Uplink::l2tpv3(&args.bess, &tunnel)?;
    eprintln!(
        "uml: uplink of {} to {} (l2tpv3 from {}); Ctrl-C stops it",
        args.bess.display(),
        tunnel.remote,
        tunnel.local
    );
    // The relay ends by itself when the switch closes the port; a signal ends it here.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let waiter = {
        let done = std::sync::Arc::clone(&done);
        std::thread::spawn(move || {
            let _ = signals.wait();
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        })
    };
    while !done.load(std::sync::atomic::Ordering::SeqCst) && !uplink.is_finished() {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    drop(waiter);
    let stats = uplink.stop()?;
    eprintln!(
        "uml: uplink stopped: {} frames to the tunnel, {} from it, {} dropped",
        stats.to_tunnel, stats.from_tunnel, stats.dropped
    );
    Ok(ExitCode::SUCCESS)
}
