//! `uml cow`: create, inspect, merge and rebase COW disk files.

use std::cell::Cell;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Subcommand;
use uml::cow::{self, CowError, CowFile};

use super::Global;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: CowCommand,
}

#[derive(Debug, Subcommand)]
enum CowCommand {
    /// Create a COW file over a backing file (the same file as uml_mkcow and the kernel make)
    Create {
        /// Replace an existing file (it is truncated first, so no old bitmap survives)
        #[arg(short, long)]
        force: bool,
        /// The COW file to create
        cow: PathBuf,
        /// The backing file it is based on
        backing: PathBuf,
    },
    /// Show a COW file's header, whether its backing file still matches, and what it holds
    Info {
        /// Backing file to check instead of the one named in the header
        #[arg(short, long, value_name = "PATH")]
        backing: Option<PathBuf>,
        /// Print JSON
        #[arg(long)]
        json: bool,
        /// The COW file
        file: PathBuf,
    },
    /// Merge a COW file and its backing file into a new sparse image (like uml_moo), or into
    /// the backing file itself with --in-place (like uml_moo -d)
    Merge {
        /// Backing file to use instead of the one named in the header (like uml_moo -b)
        #[arg(short, long, value_name = "PATH")]
        backing: Option<PathBuf>,
        /// Write the COW file's sectors into the backing file (changes its mtime, which breaks
        /// every other COW file based on it)
        #[arg(long)]
        in_place: bool,
        /// Replace OUT if it exists
        #[arg(short, long, conflicts_with = "in_place")]
        force: bool,
        /// The COW file
        cow: PathBuf,
        /// The new image
        #[arg(required_unless_present = "in_place", conflicts_with = "in_place")]
        out: Option<PathBuf>,
    },
    /// Point a COW file at its backing file's new location (which must pass the kernel's
    /// size and mtime check)
    Rebase {
        /// The COW file
        cow: PathBuf,
        /// The backing file's new path
        new_backing: PathBuf,
    },
}

pub fn run(args: Args, global: &Global) -> anyhow::Result<ExitCode> {
    let uml_dir = global
        .uml_dir
        .clone()
        .or_else(|| uml::instance::default_uml_dir().ok());
    let uml_dir = uml_dir.as_deref();
    match args.command {
        CowCommand::Create {
            force,
            cow: path,
            backing,
        } => {
            if force {
                cow::ensure_not_held(&path, uml_dir, false)?;
            }
            cow::ensure_not_held(&backing, uml_dir, true)?;
            let made = cow::create(&path, &backing, force)?;
            eprintln!(
                "created {} over {} ({} bytes)",
                path.display(),
                made.backing_path().display(),
                made.size()
            );
        }
        CowCommand::Info {
            backing,
            json,
            file,
        } => info(&file, backing.as_deref(), json, uml_dir)?,
        CowCommand::Merge {
            backing,
            in_place,
            force,
            cow: path,
            out,
        } => {
            let header = open_cow(&path)?;
            let backing_used = backing
                .clone()
                .unwrap_or_else(|| header.backing_path().to_owned());
            cow::ensure_not_held(&path, uml_dir, false)?;
            cow::ensure_not_held(&backing_used, uml_dir, !in_place)?;
            let bar = Progress::new("merging");
            let progress = |done, total| bar.update(done, total);
            if let Some(out) = out {
                // A symlink counts as existing (dangling or not): it is replaced, never followed.
                if !force && out.symlink_metadata().is_ok() {
                    anyhow::bail!(
                        "{} already exists; use --force to replace it",
                        out.display()
                    );
                }
                cow::ensure_not_held(&out, uml_dir, false)?;
                let stats = cow::merge_to(&path, backing.as_deref(), &out, &progress);
                bar.finish();
                let stats = stats?;
                eprintln!(
                    "wrote {} ({} bytes, {} sectors from the COW file)",
                    out.display(),
                    stats.size,
                    stats.sectors_from_cow
                );
            } else {
                merge_in_place(&path, backing.as_deref(), &backing_used, &bar)?;
            }
        }
        CowCommand::Rebase {
            cow: path,
            new_backing,
        } => {
            cow::ensure_not_held(&path, uml_dir, false)?;
            cow::rebase(&path, &new_backing)?;
            let now = open_cow(&path)?;
            eprintln!(
                "{} now uses {}",
                path.display(),
                now.backing_path().display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn open_cow(path: &Path) -> Result<CowFile, CowError> {
    CowFile::open(path)?.ok_or_else(|| CowError::NotCow {
        path: path.to_owned(),
    })
}

fn merge_in_place(
    path: &Path,
    backing: Option<&Path>,
    backing_used: &Path,
    bar: &Progress,
) -> anyhow::Result<()> {
    let dirs = [parent(path), parent(backing_used)];
    let others = cow::cows_on_backing(backing_used, &dirs, path);
    if cow::interrupted_merge(path).is_some() {
        eprintln!(
            "completing the interrupted in-place merge of {}",
            path.display()
        );
    }
    eprintln!(
        "uml: warning: merging in place changes the mtime of {}: the kernel will refuse every \
         COW file based on it afterwards, {} included",
        backing_used.display(),
        path.display()
    );
    for other in &others {
        eprintln!(
            "uml: warning: {} is based on {} and will no longer be usable",
            other.display(),
            backing_used.display()
        );
    }
    let progress = |done, total| bar.update(done, total);
    let stats = cow::merge_in_place(path, backing, &progress);
    bar.finish();
    let stats = stats?;
    eprintln!(
        "merged {} sectors of {} into {}; the COW file is now stale: delete it, or start afresh \
         with `uml cow create --force {} {}`",
        stats.sectors_from_cow,
        path.display(),
        backing_used.display(),
        path.display(),
        backing_used.display()
    );
    Ok(())
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn info(
    path: &Path,
    backing: Option<&Path>,
    json: bool,
    uml_dir: Option<&Path>,
) -> anyhow::Result<()> {
    let file = open_cow(path)?;
    let backing_used = backing.unwrap_or(file.backing_path());
    let check = file.check_backing(backing_used);
    let held = file
        .sectors_in_cow()
        .with_context(|| format!("cannot count the sectors held in {}", path.display()))?;
    let sectors = file.sectors();
    let share = if sectors == 0 {
        0.0
    } else {
        held as f64 / sectors as f64
    };
    let in_use = match cow::ensure_not_held(path, uml_dir, false) {
        Err(CowError::InUse { pid, umid, .. }) => Some((pid, umid)),
        _ => None,
    };
    let interrupted = cow::interrupted_merge(path);
    if json {
        let value = serde_json::json!({
            "path": path,
            "version": file.version().number(),
            "broken_v3_layout": file.version() == cow::CowVersion::V3Broken,
            "backing_file": file.backing_path(),
            "backing_used": backing_used,
            "size": file.size(),
            "mtime": file.mtime(),
            "sector_size": file.sector_size(),
            "alignment": file.alignment(),
            "bitmap_offset": file.bitmap_offset(),
            "data_offset": file.data_offset(),
            "sectors": sectors,
            "sectors_in_cow": held,
            "share_in_cow": share,
            "backing_ok": check.is_ok(),
            "backing_error": check.as_ref().err().map(error_text),
            "in_use_by": in_use.as_ref().map(|(pid, umid)| serde_json::json!({"pid": pid, "umid": umid})),
            "interrupted_in_place_merge": interrupted.is_some(),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "COW file:       {}", path.display())?;
    writeln!(out, "version:        {}", file.version())?;
    writeln!(out, "backing file:   {}", file.backing_path().display())?;
    if backing.is_some() {
        writeln!(out, "checked with:   {}", backing_used.display())?;
    }
    writeln!(
        out,
        "size:           {} bytes ({}), {} sectors of {}",
        file.size(),
        human(file.size()),
        sectors,
        file.sector_size()
    )?;
    writeln!(out, "mtime:          {}", file.mtime())?;
    match &check {
        Ok(()) => writeln!(out, "backing check:  size and mtime match")?,
        Err(e) => writeln!(out, "backing check:  FAILED: {}", error_text(e))?,
    }
    writeln!(
        out,
        "held in COW:    {held} sectors ({}), {:.2}% of the disk",
        human(held * u64::from(file.sector_size())),
        share * 100.0
    )?;
    writeln!(
        out,
        "layout:         bitmap at {}, data at {}",
        file.bitmap_offset(),
        file.data_offset()
    )?;
    if let Some((pid, umid)) = &in_use {
        match umid {
            Some(u) => writeln!(out, "in use:         by pid {pid} (uml instance \"{u}\")")?,
            None => writeln!(out, "in use:         by pid {pid}")?,
        }
    }
    if interrupted.is_some() {
        writeln!(
            out,
            "note:           an in-place merge into the backing file was interrupted; run \
             `uml cow merge --in-place` again to complete it"
        )?;
    }
    Ok(())
}

/// The error and its causes, joined by ": " as the binary prints them.
fn error_text(e: &CowError) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// A progress line on stderr, only when stderr is a terminal and the work has taken longer
/// than a moment.
struct Progress {
    label: &'static str,
    tty: bool,
    start: Instant,
    last: Cell<Option<Instant>>,
}

impl Progress {
    const DELAY: Duration = Duration::from_millis(500);
    const EVERY: Duration = Duration::from_millis(100);

    fn new(label: &'static str) -> Progress {
        Progress {
            label,
            tty: std::io::stderr().is_terminal(),
            start: Instant::now(),
            last: Cell::new(None),
        }
    }

    fn update(&self, done: u64, total: u64) {
        if !self.tty || self.start.elapsed() < Self::DELAY {
            return;
        }
        let now = Instant::now();
        if self.last.get().is_some_and(|t| now - t < Self::EVERY) {
            return;
        }
        self.last.set(Some(now));
        let frac = if total == 0 {
            1.0
        } else {
            done as f64 / total as f64
        };
        let width = 30;
        let filled = ((frac * width as f64) as usize).min(width);
        eprint!(
            "\r{} [{}{}] {:5.1}% {} of {}",
            self.label,
            "#".repeat(filled),
            " ".repeat(width - filled),
            frac * 100.0,
            human(done),
            human(total)
        );
        let _ = std::io::stderr().flush();
    }

    fn finish(&self) {
        if self.last.get().is_some() {
            eprint!("\r\x1b[K");
            let _ = std::io::stderr().flush();
        }
    }
}
