//! `uml list`, `uml clean`, `uml wait`, `uml shutdown`.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use uml::instance::{self, Instance, Liveness, RunState, ShutdownStep, WaitFor};

use super::Global;

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Print a JSON array instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct CleanArgs {
    /// Only say what would be removed
    #[arg(long, short = 'n')]
    pub dry_run: bool,
}

#[derive(Debug, clap::Args)]
pub struct WaitArgs {
    /// The instance's umid
    pub umid: String,
    /// Wait until the guest has exited instead of until it has booted
    #[arg(long)]
    pub exited: bool,
    /// Give up after this many seconds
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub timeout: u64,
}

#[derive(Debug, clap::Args)]
pub struct ShutdownArgs {
    /// The instance's umid
    pub umid: String,
    /// Seconds the guest gets to power off after ctrl-alt-del before it is halted
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub timeout: u64,
}

/// One row of `uml list`.
#[derive(Debug, serde::Serialize)]
struct Row {
    umid: String,
    pid: Option<u32>,
    /// running, paused, starting, stale, not-responding
    state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    stale_reason: Option<String>,
    memory_bytes: Option<u64>,
    uptime_seconds: Option<f64>,
    kernel: Option<String>,
    dir: String,
}

fn describe(instance: &Instance) -> Row {
    let mut row = Row {
        umid: instance.umid.clone(),
        pid: instance.pid,
        state: String::new(),
        stale_reason: None,
        memory_bytes: None,
        uptime_seconds: None,
        kernel: None,
        dir: instance.dir.display().to_string(),
    };
    match &instance.liveness {
        Liveness::Stale { reason } => {
            row.state = "stale".into();
            row.stale_reason = Some(reason.clone());
        }
        Liveness::Starting => row.state = "starting".into(),
        Liveness::Running => {
            let Ok(client) = instance.client(Duration::from_secs(1)) else {
                row.state = "not-responding".into();
                return row;
            };
            match client.version() {
                Ok(v) => {
                    row.kernel = v
                        .split_whitespace()
                        .nth(2)
                        .map(|k| uml::text::printable(k).into_owned());
                }
                Err(_) => {
                    row.state = "not-responding".into();
                    return row;
                }
            }
            if let Ok(meminfo) = client.proc_file("meminfo") {
                row.memory_bytes = meminfo
                    .lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                    .map(|kib| kib.saturating_mul(1024));
            }
            if let Ok(uptime) = client.proc_file("uptime") {
                row.uptime_seconds = uptime
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<f64>().ok())
                    .filter(|s| s.is_finite() && *s >= 0.0);
            }
            row.state = match instance::run_state(instance, &client, Duration::from_millis(150)) {
                Ok(RunState::Paused) => "paused".into(),
                Ok(RunState::Running) => "running".into(),
                Err(_) => "not-responding".into(),
            };
        }
    }
    row
}

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.0}{}", UNITS[i])
}

fn human_duration(s: f64) -> String {
    let s = s as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86400, (s % 86400) / 3600),
    }
}

pub fn list(args: ListArgs, global: &Global) -> anyhow::Result<ExitCode> {
    let uml_dir = instance::uml_dir_or_default(global.uml_dir.as_deref())?;
    let instances = instance::discover(&uml_dir)?;
    // Ask every guest at once: one that does not answer costs its own timeout, not everyone's.
    let rows: Vec<Row> = std::thread::scope(|s| {
        let handles: Vec<_> = instances
            .iter()
            .map(|i| s.spawn(move || describe(i)))
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        eprintln!("no UML instances in {}", uml_dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    let dash = || "-".to_owned();
    let table: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                uml::text::printable(&r.umid).replace('\n', "\\n"),
                r.pid.map(|p| p.to_string()).unwrap_or_else(dash),
                r.state.clone(),
                r.memory_bytes.map(human_bytes).unwrap_or_else(dash),
                r.uptime_seconds.map(human_duration).unwrap_or_else(dash),
                r.kernel.clone().unwrap_or_else(dash),
            ]
        })
        .collect();
    let header = ["UMID", "PID", "STATE", "MEMORY", "UPTIME", "KERNEL"];
    let mut widths = header.map(str::len);
    for row in &table {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    println!("{}", line(&header.map(str::to_owned)));
    for row in &table {
        println!("{}", line(row));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn clean(args: CleanArgs, global: &Global) -> anyhow::Result<ExitCode> {
    let uml_dir = instance::uml_dir_or_default(global.uml_dir.as_deref())?;
    let done = instance::sweep(&uml_dir, args.dry_run)?;
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    for i in &done.removed {
        let reason = match &i.liveness {
            Liveness::Stale { reason } => reason.as_str(),
            _ => "",
        };
        let line = format!("{verb} {} ({reason})", i.dir.display());
        println!("{}", uml::text::printable(&line));
    }
    for (i, why) in &done.kept {
        let line = format!("kept {}: {why}", i.dir.display());
        println!("{}", uml::text::printable(&line));
    }
    if args.dry_run {
        return Ok(ExitCode::SUCCESS);
    }
    clean_runtime_files(&uml_dir);
    Ok(ExitCode::SUCCESS)
}

/// Init scripts, logs and notify sockets that `uml run` left for guests that are gone, and
/// the files of named switches that no longer run (a live switch's are kept).
fn clean_runtime_files(uml_dir: &Path) {
    let rt = uml::switch::named::runtime_dir(uml_dir);
    for name in uml::switch::named::remove_stale(&rt) {
        println!("removed the files of the stopped switch {name}");
    }
    // Through the directory's descriptor, opened without following a symlink, and only the
    // files `uml run` makes: a uml_dir that another user can write must not make this remove
    // anything elsewhere (`.umlkit` swapped for a symlink to /etc).
    use nix::fcntl::{AtFlags, OFlag};
    let Ok(dir) = nix::fcntl::open(
        &rt,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    ) else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&dir)
    )) else {
        return;
    };
    let live: Vec<String> = instance::discover(uml_dir)
        .unwrap_or_default()
        .into_iter()
        .filter(|i| !matches!(i.liveness, Liveness::Stale { .. }))
        .map(|i| i.umid)
        .collect();
    for e in entries.flatten().take(65_536) {
        let Some(name) = e.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if uml::switch::named::owner(&name).is_some() {
            continue;
        }
        let Some((umid, kind)) = name.rsplit_once('.') else {
            continue;
        };
        let wanted = match kind {
            "init" | "log" => libc::S_IFREG,
            "notify" => libc::S_IFSOCK,
            _ => continue,
        };
        let is_wanted = nix::sys::stat::fstatat(&dir, name.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
            .is_ok_and(|st| st.st_mode & libc::S_IFMT == wanted);
        if is_wanted && !live.iter().any(|l| l == umid) {
            let _ =
                nix::unistd::unlinkat(&dir, name.as_str(), nix::unistd::UnlinkatFlags::NoRemoveDir);
        }
    }
}

pub fn wait(args: WaitArgs, global: &Global) -> anyhow::Result<ExitCode> {
    let uml_dir = instance::uml_dir_or_default(global.uml_dir.as_deref())?;
    let what = if args.exited {
        WaitFor::Exited
    } else {
        WaitFor::Booted
    };
    instance::wait(
        &uml_dir,
        &args.umid,
        what,
        Duration::from_secs(args.timeout),
    )?;
    Ok(ExitCode::SUCCESS)
}

pub fn shutdown(args: ShutdownArgs, global: &Global) -> anyhow::Result<ExitCode> {
    let uml_dir = instance::uml_dir_or_default(global.uml_dir.as_deref())?;
    let target = instance::find_running(&uml_dir, &args.umid)?;
    let step = instance::shutdown(&target, Duration::from_secs(args.timeout))?;
    match step {
        ShutdownStep::CtrlAltDel => eprintln!("{}: powered off", args.umid),
        ShutdownStep::Rebooted => eprintln!(
            "{}: rebooted instead of powering off; stopped at the restart",
            args.umid
        ),
        ShutdownStep::Halt => eprintln!(
            "{}: did not power off within {} s of ctrl-alt-del; halted",
            args.umid, args.timeout
        ),
        ShutdownStep::Terminate => eprintln!("{}: did not answer; stopped with SIGTERM", args.umid),
        ShutdownStep::Kill => eprintln!("{}: did not answer; killed", args.umid),
    }
    if matches!(step, ShutdownStep::Kill) {
        bail!(
            "{} had to be killed: its disks may not have been synced",
            args.umid
        );
    }
    Ok(ExitCode::SUCCESS)
}
