//! `uml doctor`: can this host run UML guests with this kernel, and what to do when not.

use std::process::ExitCode;
use std::time::Duration;

use uml::doctor::{self, Finding, Status};

use super::Global;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: 0 when `uml run` works with the kernel (warnings may \
    remain: a part such as umlfs or umld cannot work), 1 when it cannot.\n\n\
    Examples:\n  \
    uml doctor                  the default kernel and this host\n  \
    uml doctor --kernel 7.2     a kernel built by `uml kernel build`\n  \
    uml doctor --json"
)]
pub struct Args {
    /// The kernel to check: a path, a release or series built by `uml kernel build` (7.2), or
    /// a command on PATH [default: $UML_KERNEL, else `linux` on PATH, else the newest built one]
    #[arg(long, value_name = "KERNEL")]
    pub kernel: Option<String>,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
    /// Seconds each probe guest may take to run its first process
    #[arg(long, value_name = "SECONDS", default_value_t = 20)]
    pub timeout: u64,
    /// Do not boot the other kernels found (only profile them)
    #[arg(long)]
    pub no_probe_others: bool,
}

pub fn run(args: Args, _global: &Global) -> anyhow::Result<ExitCode> {
    let report = doctor::examine(&doctor::Options {
        kernel: args.kernel,
        probe_timeout: Duration::from_secs(args.timeout.max(1)),
        probe_others: !args.no_probe_others,
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for finding in &report.findings {
            print!("{}", render(finding));
        }
        let (errors, warnings) = (report.count(Status::Error), report.count(Status::Warning));
        println!(
            "{errors} error(s), {warnings} warning(s): {}",
            if errors > 0 {
                "`uml run` cannot work as things are"
            } else if warnings > 0 {
                "`uml run` works; some parts of umlkit cannot"
            } else {
                "everything umlkit needs works"
            }
        );
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn render(f: &Finding) -> String {
    let tag = match f.status {
        Status::Ok => "OK",
        Status::Info => "INFO",
        Status::Warning => "WARNING",
        Status::Error => "ERROR",
    };
    let mut out = format!("{tag:<8}{}: {}\n", f.check, f.summary);
    if let Some(d) = &f.diagnosis {
        out.push_str(&format!("        cause: {}\n", d.cause));
        out.push_str(&format!("        the kernel said: {}\n", d.line));
    }
    for line in &f.details {
        out.push_str(&format!("        {line}\n"));
    }
    if let Some(fix) = &f.fix {
        out.push_str(&format!("        fix: {fix}\n"));
    }
    out
}
