//! Waiting for an instance, and following a `uml_dir` as instances come and go.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::*;

/// What [`wait`] waited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitFor {
    /// Until the instance answers on its mconsole socket.
    Booted,
    /// Until its kernel process is gone.
    Exited,
}

/// Waits until the instance `umid` has booted (its mconsole answers `version`) or exited.
/// An instance that does not exist yet is waited for too.
///
/// # Errors
/// [`InstanceError::StillRunning`] / [`InstanceError::NotRunning`] at the deadline.
pub fn wait(
    uml_dir: &Path,
    umid: &str,
    what: WaitFor,
    timeout: Duration,
) -> Result<Instance, InstanceError> {
    let deadline = Instant::now() + timeout;
    loop {
        let found = find(uml_dir, umid);
        match (what, &found) {
            (WaitFor::Booted, Ok(i)) if i.is_running() => {
                if let Ok(c) = i.client(Duration::from_millis(500))
                    && c.version().is_ok()
                {
                    return Ok(i.clone());
                }
            }
            (WaitFor::Exited, Err(InstanceError::NotFound { .. })) => {
                return Ok(Instance {
                    umid: umid.to_owned(),
                    dir: uml_dir.join(umid),
                    pid: None,
                    liveness: Liveness::Stale {
                        reason: "exited".into(),
                    },
                });
            }
            (WaitFor::Exited, Ok(i)) if matches!(i.liveness, Liveness::Stale { .. }) => {
                return Ok(i.clone());
            }
            _ => {}
        }
        if Instant::now() >= deadline {
            return match (what, found) {
                (WaitFor::Exited, Ok(i)) => Err(InstanceError::StillRunning {
                    umid: umid.to_owned(),
                    pid: i.pid.unwrap_or(0),
                    after: timeout,
                }),
                (_, Ok(i)) => Err(InstanceError::NotRunning {
                    umid: umid.to_owned(),
                    reason: format!("not booted after {timeout:?} ({})", i.liveness_text()),
                }),
                (_, Err(e)) => Err(e),
            };
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// A change in a watched `uml_dir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceEvent {
    /// A new instance directory, or one whose liveness changed (starting → running, running →
    /// stale).
    Changed(Instance),
    /// The instance directory is gone (an orderly exit, or `uml clean`).
    Removed { umid: String },
}

/// Watches a `uml_dir` for instances that appear, change and disappear.
///
/// Events come from the `notify` crate (inotify) and are confirmed by a rescan, so every event
/// reflects the directory as it is; a periodic rescan (every `poll`) also catches what inotify
/// cannot see: a kernel killed by SIGKILL leaves its directory unchanged while its pid dies.
#[derive(Debug)]
pub struct Watcher {
    _watcher: notify::RecommendedWatcher,
    _stop: mpsc::Sender<()>,
}

impl Watcher {
    /// Starts watching `uml_dir` (created if missing, as the kernel would). Events arrive on
    /// the returned channel; the current instances arrive first as `Changed`.
    ///
    /// # Errors
    /// [`InstanceError::Watch`] when inotify cannot watch the directory.
    pub fn start(
        uml_dir: &Path,
        poll: Duration,
    ) -> Result<(Watcher, mpsc::Receiver<InstanceEvent>), InstanceError> {
        use notify::Watcher as _;
        let _ = fs::create_dir_all(uml_dir);
        let (kick_tx, kick_rx) = mpsc::channel::<()>();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let (event_tx, event_rx) = mpsc::channel();
        let kick = kick_tx.clone();
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if !res.as_ref().is_ok_and(only_reads) {
                let _ = kick.send(());
            }
        })
        .map_err(|source| InstanceError::Watch {
            path: uml_dir.to_owned(),
            source,
        })?;
        watcher
            .watch(uml_dir, notify::RecursiveMode::Recursive)
            .map_err(|source| InstanceError::Watch {
                path: uml_dir.to_owned(),
                source,
            })?;
        let dir = uml_dir.to_owned();
        thread::Builder::new()
            .name("uml-dir-watch".into())
            .spawn(move || watch_loop(&dir, poll, &kick_rx, &stop_rx, &event_tx))
            .map_err(|source| InstanceError::Watch {
                path: uml_dir.to_owned(),
                source: notify::Error::io(source),
            })?;
        Ok((
            Watcher {
                _watcher: watcher,
                _stop: stop_tx,
            },
            event_rx,
        ))
    }
}

/// Whether `event` is a file or directory being opened or read, which changes nothing. The
/// inotify backend reports opens, and every rescan opens the directory and the pid files: a
/// rescan for them started the next one, 50 times a second for as long as the watcher ran.
fn only_reads(event: &notify::Event) -> bool {
    use notify::event::{AccessKind, AccessMode, EventKind};
    matches!(
        event.kind,
        EventKind::Access(
            AccessKind::Any
                | AccessKind::Read
                | AccessKind::Open(_)
                | AccessKind::Close(AccessMode::Read | AccessMode::Execute | AccessMode::Any)
                | AccessKind::Other
        )
    )
}

fn watch_loop(
    dir: &Path,
    poll: Duration,
    kick: &mpsc::Receiver<()>,
    stop: &mpsc::Receiver<()>,
    events: &mpsc::Sender<InstanceEvent>,
) {
    let mut known: BTreeMap<String, Instance> = BTreeMap::new();
    loop {
        if matches!(stop.try_recv(), Err(mpsc::TryRecvError::Disconnected)) {
            return;
        }
        let now: BTreeMap<String, Instance> = discover(dir)
            .unwrap_or_default()
            .into_iter()
            .map(|i| (i.umid.clone(), i))
            .collect();
        for (umid, instance) in &now {
            if known.get(umid) != Some(instance)
                && events
                    .send(InstanceEvent::Changed(instance.clone()))
                    .is_err()
            {
                return;
            }
        }
        for umid in known.keys() {
            if !now.contains_key(umid)
                && events
                    .send(InstanceEvent::Removed { umid: umid.clone() })
                    .is_err()
            {
                return;
            }
        }
        known = now;
        match kick.recv_timeout(poll) {
            Ok(()) => {
                // Coalesce a burst (a boot makes several files) into one rescan.
                thread::sleep(Duration::from_millis(20));
                while kick.try_recv().is_ok() {}
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn an_idle_watcher_rescans_at_its_poll_rate_not_for_its_own_reads() {
        let dir = tempfile::tempdir().unwrap();
        let guest = dir.path().join("g1");
        fs::create_dir(&guest).unwrap();
        fs::write(guest.join("pid"), "4000000\n").unwrap();
        // Every rescan opens the uml_dir to list it: count the opens another watcher sees.
        let opens = Arc::new(AtomicUsize::new(0));
        let seen = opens.clone();
        let mut counter = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if res.is_ok_and(|e| {
                matches!(
                    e.kind,
                    notify::event::EventKind::Access(notify::event::AccessKind::Open(_))
                )
            }) {
                seen.fetch_add(1, Ordering::SeqCst);
            }
        })
        .unwrap();
        notify::Watcher::watch(
            &mut counter,
            dir.path(),
            notify::RecursiveMode::NonRecursive,
        )
        .unwrap();
        let (watcher, events) = Watcher::start(dir.path(), Duration::from_secs(1)).unwrap();
        assert!(matches!(
            events.recv_timeout(Duration::from_secs(5)),
            Ok(InstanceEvent::Changed(_))
        ));
        let before = opens.load(Ordering::SeqCst);
        thread::sleep(Duration::from_millis(2500));
        let rescans = opens.load(Ordering::SeqCst) - before;
        drop(watcher);
        // Two or three polls in 2.5 s (a rescan opens the directory and the guest's files).
        assert!(
            rescans <= 12,
            "{rescans} opens in 2.5 s: the watcher rescans without end"
        );
    }
}
