//! Where a launch keeps its runtime files, their clean-up, fresh umids, and `--disk` specs as
//! `ubd` words.

use super::*;

/// The directory where umlkit keeps a launch's runtime files (init script, boot log, notify
/// socket): `<uml_dir>/.umlkit`, or a directory under /tmp when that would make the notify
/// socket's path longer than a unix socket allows (107 bytes).
pub fn runtime_dir(uml_dir: &Path, umid: &str) -> PathBuf {
    let preferred = uml_dir.join(".umlkit");
    let socket = preferred.join(format!("{umid}.notify"));
    if socket.as_os_str().len() <= 107 {
        preferred
    } else {
        PathBuf::from(format!("/tmp/umlkit-{}", nix::unistd::getuid()))
    }
}

/// Removes the init scripts and boot logs (`UMID.init`, `UMID.log`) in a runtime directory
/// whose guests have ended: a detached guest's stay while it runs. A file is left alone while
/// an instance of its umid is alive or starting, and while it is younger than a minute (a
/// launch that has not started its kernel yet). Symlinks and other files are never touched.
pub fn sweep_runtime_dir(rt: &Path, uml_dir: &Path) {
    let Ok(dir) = fs::read_dir(rt) else { return };
    let now = std::time::SystemTime::now();
    for entry in dir.flatten().take(10_000) {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(umid) = name
            .strip_suffix(".init")
            .or_else(|| name.strip_suffix(".log"))
        else {
            continue;
        };
        let Ok(meta) = entry.path().symlink_metadata() else {
            continue;
        };
        let young = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .is_none_or(|age| age < Duration::from_secs(60));
        if !meta.file_type().is_file() || young {
            continue;
        }
        let alive = crate::instance::find_existing(uml_dir, umid).is_some_and(|i| {
            !matches!(
                i.refresh().liveness,
                crate::instance::Liveness::Stale { .. }
            )
        });
        if !alive {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// A umid for a guest that was not given one: `run-` and six characters.
pub fn fresh_umid() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    let mut n = h.finish();
    let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut s = String::from("run-");
    for _ in 0..6 {
        s.push(alphabet[(n % alphabet.len() as u64) as usize] as char);
        n /= alphabet.len() as u64;
    }
    s
}

/// A disk in `uml run`'s vocabulary, `FILE`, `FILE:ro`, `COW:BASE` or `COW:BASE:ro`, as the
/// kernel argument `ubd<unit>[r]=<file>[,<base>]`. Relative paths are taken against
/// `relative_to`, and refused without one (a service has no meaningful working directory: the
/// kernel would look in its own). The error names the spec and what is wrong with it.
pub fn disk_arg(unit: usize, spec: &str, relative_to: Option<&Path>) -> Result<String, String> {
    if unit > 15 {
        return Err(format!("disk {spec}: at most 16 disks (ubda to ubdp)"));
    }
    let mut fields: Vec<&str> = spec.split(':').collect();
    let read_only = fields.last() == Some(&"ro");
    if read_only || fields.last() == Some(&"rw") {
        fields.pop();
    }
    let absolute = |f: &str| -> Result<PathBuf, String> {
        let p = Path::new(f);
        match (p.is_absolute(), relative_to) {
            (true, _) => Ok(p.to_owned()),
            (false, Some(base)) => Ok(base.join(p)),
            (false, None) => Err(format!(
                "disk {spec:?}: {f} is a relative path; give an absolute one"
            )),
        }
    };
    let files: Vec<PathBuf> = match fields.as_slice() {
        [file] if !file.is_empty() => vec![absolute(file)?],
        [cow, base] if !cow.is_empty() && !base.is_empty() => vec![absolute(cow)?, absolute(base)?],
        _ => {
            return Err(format!(
                "disk {spec:?}: expected FILE, FILE:ro, COW:BASE or COW:BASE:ro"
            ));
        }
    };
    for f in &files {
        let s = f.to_string_lossy();
        if s.contains(',') || s.contains(':') {
            return Err(format!(
                "disk {spec:?}: the kernel splits disk paths at ',' and ':', so {s:?} cannot be used; rename it or use a symlink"
            ));
        }
    }
    // A plain disk must exist (the kernel would fail the open); a COW pair is the kernel's
    // to create or check.
    if let [file] = files.as_slice()
        && !file.exists()
    {
        return Err(format!("disk {spec:?}: {} does not exist", file.display()));
    }
    let flags = if read_only { "r" } else { "" };
    let value: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    Ok(format!("ubd{unit}{flags}={}", value.join(",")))
}
