//! `uml check`: validate a UML kernel command line.
//!
//! Human output: one line per finding, `<severity>: <word>: <message>` (`<severity>: <message>`
//! for findings about the whole command line), then a summary line.
//!
//! The verdicts are for one kernel: `--kernel PATH|RELEASE` (profiled with `--version` and
//! `--showconfig`), `--kernel-version X.Y` (Debian's build of that version, assumed), else the
//! kernel `uml run` would start (`$UML_KERNEL`, `linux` on `PATH`, then kernels built by `uml
//! kernel build`); the first output line names it.
//!
//! `--json` prints one object instead:
//! `{"ok": bool, "kernel": {"release": "7.2.12", "path": "/…/linux"|null, "assumed": bool},
//! "errors": n, "warnings": n, "notes": n, "findings": [...]}`, where each finding
//! is `{"severity": "error"|"warning"|"note", "code": "<stable id>", "index": <argv index>|null,
//! "arg": "<word>"|null, "message": "...", "explain": "<what the option does>"|null}`.
//! These field names are stable.
//!
//! Exit status: 0 without errors (warnings too with `--strict`), 1 otherwise.

use std::process::ExitCode;

use anyhow::Context;
use uml::check::{self, CheckEnv, Severity};
use uml::cmdline::CommandLine;
use uml::kernel::{self, Profile, Version};

use super::Global;

/// Validate a UML kernel command line and explain what the kernel would do with it.
///
/// Give the words exactly as they would follow the kernel binary; options of `uml check` come
/// first. Put kernel words that start with `-` after `--`: `uml check -- --help`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Give the words exactly as they would follow the kernel binary, after the \
options of `uml check`; put `--` before them when one starts with `-` (uml check -- --help). \
Exit status: 0 without errors, 1 with errors (or warnings, with --strict)."
)]
pub struct Args {
    /// Also fail (exit 1) on warnings
    #[arg(long)]
    pub strict: bool,
    /// Say what each option does
    #[arg(long)]
    pub explain: bool,
    /// Print a machine-readable JSON report
    #[arg(long)]
    pub json: bool,
    /// Do not look at host files (images, sockets, mount flags)
    #[arg(long)]
    pub no_fs: bool,
    /// Check for this kernel: a path, or a release built by `uml kernel build` (default: the
    /// kernel `uml run` would start)
    #[arg(long, value_name = "PATH|RELEASE", conflicts_with = "kernel_version")]
    pub kernel: Option<String>,
    /// Check for Debian's build of this kernel version (e.g. 6.1, 7.2) without a binary
    #[arg(long, value_name = "X.Y")]
    pub kernel_version: Option<String>,
    /// The kernel's argv words
    #[arg(
        value_name = "KERNEL_ARG",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub words: Vec<String>,
}

pub fn run(args: Args, global: &Global) -> anyhow::Result<ExitCode> {
    let cmdline = CommandLine::parse(&args.words);
    let profile = match (&args.kernel, &args.kernel_version) {
        (_, Some(v)) => Profile::assumed(Version::parse(v).with_context(|| {
            format!("--kernel-version {v:?}: expected a version such as 6.1 or 7.2")
        })?),
        (Some(k), None) => Profile::read(&kernel::resolve(Some(k))?)?,
        // No kernel at all is no reason not to check the words: judge them as Debian's 6.1.
        (None, None) => kernel::resolve(None)
            .and_then(|path| Profile::read(&path))
            .unwrap_or_else(|_| Profile::assumed(Version::new(6, 1, 0))),
    };
    let assumed = profile.path.as_os_str().is_empty();
    let mut env = CheckEnv::from_process_for(profile);
    env.filesystem = !args.no_fs;
    env.default_uml_dir.clone_from(&global.uml_dir);
    let report = check::check(&cmdline, &env);
    let errors = report.count(Severity::Error);
    let warnings = report.count(Severity::Warning);
    let notes = report.count(Severity::Note);
    let failed = errors > 0 || (args.strict && warnings > 0);

    if args.json {
        let json = serde_json::json!({
            "ok": !failed,
            "kernel": {
                "release": env.kernel.release,
                "path": (!assumed).then(|| env.kernel.path.display().to_string()),
                "assumed": assumed,
            },
            "errors": errors,
            "warnings": warnings,
            "notes": notes,
            "findings": report.findings,
        });
        let text = serde_json::to_string_pretty(&json).context("cannot encode the report")?;
        println!("{text}");
    } else {
        if assumed {
            println!(
                "kernel: {} (assumed: Debian's build of {})",
                env.kernel.release,
                env.kernel.series()
            );
        } else {
            println!(
                "kernel: {} ({})",
                env.kernel.release,
                env.kernel.path.display()
            );
        }
        if args.explain {
            for arg in cmdline.args() {
                if let Some(help) = check::explain(arg) {
                    println!("{arg}: {help}");
                }
            }
            if !cmdline.is_empty() {
                println!();
            }
        }
        for f in &report.findings {
            match &f.arg {
                Some(arg) => println!("{}: {arg}: {}", f.severity.as_str(), f.message),
                None => println!("{}: {}", f.severity.as_str(), f.message),
            }
        }
        let plural = |n: usize, word: &str| {
            if n == 1 {
                format!("{n} {word}")
            } else {
                format!("{n} {word}s")
            }
        };
        println!(
            "{}, {}, {}",
            plural(errors, "error"),
            plural(warnings, "warning"),
            plural(notes, "note")
        );
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
