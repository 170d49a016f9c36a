//! `umld`: the D-Bus service that puts every UML guest of a uml_dir on the desktop.
//!
//! Bus name `org.umlkit.uml1`; the manager object [`MANAGER_PATH`] and one object per guest
//! under [`object_path::MACHINE_PREFIX`], named like `org.freedesktop.machine1`. The service
//! is a thin adapter over the `uml` library: discovery ([`uml::instance`]), the mconsole
//! client ([`uml::mconsole::AsyncClient`]) and what its replies mean ([`uml::replies`]), the
//! option model ([`uml::check`], [`uml::cmdline`]) and the launcher ([`uml::launch`]) for
//! `Launch`, the notify socket ([`uml::notify_socket`]), `/proc` ([`uml::procfs`]) and exit
//! waits ([`uml::pidfd`]). It keeps only the D-Bus side: objects, properties, signals and
//! errors. The interface definitions are checked in under `interfaces/`.
//!
//! Guarantees: the bus is never blocked by a guest (every mconsole call has a deadline and
//! each machine its own client); a guest appears once however it is learnt of (scan, watch,
//! notify, launch); guests survive a restart of the service and are adopted again.

mod access;
pub mod error;
mod machine;
mod manager;
pub mod manpage;
pub mod object_path;
mod service;
mod users;

use std::sync::Arc;

pub use access::{LAUNCH_ACTION, MANAGE_ACTION};
pub use error::Error;
pub use object_path::{MANAGER_PATH, machine_path};
pub use service::Config;

/// The well-known bus name.
pub const BUS_NAME: &str = "org.umlkit.uml1";

/// Which bus to serve on.
#[derive(Debug, Clone)]
pub enum Bus {
    Session,
    System,
    /// A bus at this D-Bus address (a private bus for tests).
    Address(String),
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot connect to the D-Bus bus")]
    Connect(#[source] zbus::Error),
    #[error("cannot serve {what}")]
    Serve {
        what: &'static str,
        #[source]
        source: zbus::Error,
    },
    #[error("cannot own the bus name {BUS_NAME} (is another umld running on this bus?)")]
    Name(#[source] zbus::Error),
    #[error("cannot serve notifications (is another umld running? pass --notify-socket)")]
    Notify(#[from] uml::notify_socket::NotifySocketError),
    #[error("cannot watch the uml_dir")]
    Watch(#[from] uml::instance::InstanceError),
    #[error("cannot install a signal handler")]
    Signal(#[source] std::io::Error),
}

/// Runs the service until SIGTERM/SIGINT or until the bus connection closes.
///
/// # Errors
/// [`ServeError`] when it cannot start: no bus, the name is taken, the notify socket or the
/// uml_dir watch cannot be set up.
pub async fn serve(config: Config, bus: Bus) -> Result<(), ServeError> {
    let builder = match &bus {
        Bus::Session => zbus::connection::Builder::session(),
        Bus::System => zbus::connection::Builder::system(),
        Bus::Address(a) => zbus::connection::Builder::address(a.as_str()),
    };
    let conn = builder.build().await.map_err(ServeError::Connect)?;
    let system = matches!(bus, Bus::System);
    let policy = match bus {
        Bus::System => access::Policy::Polkit,
        Bus::Session | Bus::Address(_) => access::Policy::OwnerOnly,
    };
    let access = Arc::new(access::Access::new(policy, conn.clone()));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let service = Arc::new(
        service::Service::new(config.clone(), conn.clone(), tx.clone(), access).map_err(|e| {
            ServeError::Serve {
                what: "the manager",
                source: zbus::Error::Failure(e.to_string()),
            }
        })?,
    );
    let server = conn.object_server();
    // The ObjectManager first, so that every machine object added later is announced.
    server
        .at(
            MANAGER_PATH,
            manager::Objects {
                service: service.clone(),
            },
        )
        .await
        .map_err(|source| ServeError::Serve {
            what: "the object manager",
            source,
        })?;
    server
        .at(
            MANAGER_PATH,
            manager::Manager {
                service: service.clone(),
            },
        )
        .await
        .map_err(|source| ServeError::Serve {
            what: "the manager",
            source,
        })?;

    let notify = uml::notify_socket::SharedNotifySocket::bind(&config.notify_socket)?;
    if system {
        open_notify_socket(&config.notify_socket);
    }
    for instance in uml::instance::discover(&config.uml_dir).unwrap_or_default() {
        service.adopt(&instance).await;
    }
    service.scan_users().await;
    let (_watcher, watch_rx) = uml::instance::Watcher::start(&config.uml_dir, config.poll)?;
    let watch_tx = tx.clone();
    std::thread::Builder::new()
        .name("umld-watch".into())
        .spawn(move || {
            while let Ok(event) = watch_rx.recv() {
                if watch_tx.send(service::Event::Instance(event)).is_err() {
                    return;
                }
            }
        })
        .map_err(ServeError::Signal)?;
    let notify_tx = tx.clone();
    let notify_task = tokio::spawn(async move {
        loop {
            match notify.recv().await {
                Ok(r) => {
                    if notify_tx.send(service::Event::Notify(r)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!("notify socket failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    });

    // Neither replaceable nor replacing: a second umld on the bus fails instead of taking the
    // name (and zbus's NameLost watcher, which warns when the bus goes away, is not started).
    let reply = conn
        .request_name_with_flags(BUS_NAME, zbus::fdo::RequestNameFlags::DO_NOT_QUEUE)
        .await
        .map_err(ServeError::Name)?;
    if reply != zbus::fdo::RequestNameReply::PrimaryOwner {
        return Err(ServeError::Name(zbus::Error::NameTaken));
    }
    tracing::info!(uml_dir = %config.uml_dir.display(), "umld is serving {BUS_NAME}");

    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(ServeError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(ServeError::Signal)?;
    // State follows pauses and resumes by anyone (uml pause, uml_mconsole stop): a cheap
    // host-side look at each kernel (uml::instance::paused_now) twice a second.
    let sync_service = service.clone();
    let sync_task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(service::STATE_SYNC);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut n = 0u32;
        loop {
            tick.tick().await;
            sync_service.sync_run_states().await;
            n = n.wrapping_add(1);
            if n.is_multiple_of(service::DEVICE_REFRESH_EVERY) {
                sync_service.refresh_devices();
                sync_service.scan_users().await;
            }
        }
    });
    loop {
        tokio::select! {
            event = rx.recv() => match event {
                Some(event) => service.handle(event).await,
                None => break,
            },
            () = conn.closed() => {
                tracing::info!("the bus connection closed; exiting");
                break;
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    notify_task.abort();
    let _ = notify_task.await;
    sync_task.abort();
    let _ = sync_task.await;
    Ok(())
}

/// The system service launches guests that run as their callers (see [`users`]): their
/// kernels send to the notify socket as those users. So it may be sent to by anyone (its
/// directory searchable, not listable, and the socket writable); the service takes from a
/// user only what concerns that user's own guests.
fn open_notify_socket(socket: &std::path::Path) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let set = |p: &std::path::Path, mode: u32| {
        if let Err(e) = std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)) {
            tracing::warn!(path = %p.display(), "cannot open the notify socket to callers' guests: {e}");
        }
    };
    // bind() checked the directory: this user's, not writable by others.
    if let Some(dir) = socket.parent()
        && let Ok(meta) = std::fs::symlink_metadata(dir)
        && meta.is_dir()
        && meta.uid() == nix::unistd::geteuid().as_raw()
    {
        let mode = meta.mode() & 0o7777;
        if mode & 0o001 == 0 {
            set(dir, mode | 0o011);
        }
        set(socket, 0o666);
    }
}
