//! Instance discovery and the uml_dir watcher against real guests.

use std::time::{Duration, Instant};

use testkit::{GuestBuilder, UmlDir};
use uml::instance::{self, InstanceEvent, Liveness, Watcher};

fn next_matching(
    events: &std::sync::mpsc::Receiver<InstanceEvent>,
    what: &str,
    mut pred: impl FnMut(&InstanceEvent) -> bool,
) -> InstanceEvent {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(e) if pred(&e) => return e,
            Ok(_) => {}
            Err(e) => panic!("no event {what} within 30 s: {e}"),
        }
    }
}

#[test]
fn the_watcher_sees_guests_appear_go_stale_and_disappear() {
    let dir = UmlDir::new();
    let (_watcher, events) = Watcher::start(dir.path(), Duration::from_millis(500)).unwrap();

    let mut guest = GuestBuilder::new("w").uml_dir(dir.path()).boot().unwrap();
    let umid = guest.umid().to_owned();
    let e = next_matching(
        &events,
        "running",
        |e| matches!(e, InstanceEvent::Changed(i) if i.umid == umid && i.liveness == Liveness::Running),
    );
    let InstanceEvent::Changed(i) = e else {
        unreachable!()
    };
    assert_eq!(i.pid, Some(guest.pid()));

    // SIGKILL leaves the directory behind: the periodic rescan reports it stale.
    guest.kill();
    next_matching(
        &events,
        "stale",
        |e| matches!(e, InstanceEvent::Changed(i) if i.umid == umid && matches!(i.liveness, Liveness::Stale { .. })),
    );
    let removed = instance::clean(dir.path()).unwrap();
    assert_eq!(removed.len(), 1);
    next_matching(
        &events,
        "removed",
        |e| matches!(e, InstanceEvent::Removed { umid: u } if *u == umid),
    );
}

#[test]
fn an_orderly_exit_removes_the_instance_and_the_watcher_says_so() {
    let dir = UmlDir::new();
    let (_watcher, events) = Watcher::start(dir.path(), Duration::from_secs(30)).unwrap();
    let mut guest = GuestBuilder::new("x")
        .uml_dir(dir.path())
        .body("sleep 2")
        .boot()
        .unwrap();
    let umid = guest.umid().to_owned();
    next_matching(
        &events,
        "appeared",
        |e| matches!(e, InstanceEvent::Changed(i) if i.umid == umid),
    );
    guest.wait_exit(Duration::from_secs(30)).unwrap();
    // inotify, not the 30 s poll, brings this one.
    next_matching(
        &events,
        "removed",
        |e| matches!(e, InstanceEvent::Removed { umid: u } if *u == umid),
    );
    assert!(instance::discover(dir.path()).unwrap().is_empty());
}

#[test]
fn discovery_tells_running_from_stale_and_finds_by_pid() {
    let guest = GuestBuilder::new("d").boot().unwrap();
    let found = instance::find_running(guest.uml_dir(), guest.umid()).unwrap();
    assert_eq!(found.pid, Some(guest.pid()));
    assert_eq!(
        instance::umid_of_pid(guest.uml_dir(), guest.pid()).as_deref(),
        Some(guest.umid())
    );
    let err = instance::find(guest.uml_dir(), "nope")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(guest.umid()),
        "the error names the running ones: {err}"
    );
}
