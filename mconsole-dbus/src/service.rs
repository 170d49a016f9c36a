//! The service's model of the machines and the event loop that keeps it true.
//!
//! Sources of truth, all funnelled into one loop so that each machine is added and removed
//! exactly once:
//! * the uml_dir scan at start and [`uml::instance::Watcher`] afterwards (guests started by
//!   anyone, and re-adoption after a restart of the service);
//! * the notify socket (boot, panic, hang, `/proc/mconsole` text);
//! * one exit watcher per machine, on a pidfd ([`uml::pidfd`]); a kernel this service started
//!   is then reaped for its real exit status;
//! * the mconsole socket of each machine: bound anew under the same pid, it tells of a reboot,
//!   whoever started the guest.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use uml::instance::{Instance, InstanceEvent, Liveness};
use uml::mconsole::Notification;
use uml::notify_socket::Sent;
use zbus::object_server::SignalEmitter;
use zbus::{OwnedObjectPath, OwnedVariant};

use crate::access::Access;
use crate::error::Error;
use crate::machine::{MachineData, MachineIface, Props, State};
use crate::object_path::{MANAGER_INTERFACE, MANAGER_PATH};

/// How often State is checked against each kernel (paused or running).
pub(crate) const STATE_SYNC: Duration = Duration::from_millis(500);

/// How often consoles and disks are read again (every this many state syncs: 2 s).
pub(crate) const DEVICE_REFRESH_EVERY: u32 = 4;

/// How long after its mconsole came up a guest's userspace is waited for.
const USERSPACE_WAIT: Duration = Duration::from_secs(120);

/// How long init must have run before Booted: a panic right after exec comes first.
const BOOT_SETTLE: Duration = Duration::from_millis(150);

/// How long an exit waits for the notifications the kernel sent just before it.
const EXIT_SETTLE: Duration = Duration::from_millis(150);

/// What the service is told about its machines.
#[derive(Debug)]
pub(crate) enum Event {
    Instance(InstanceEvent),
    Notify(Sent),
    Exited { umid: String, pid: u32, status: i32 },
}

/// How the service runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The uml_dir watched, and where launched guests live.
    pub uml_dir: PathBuf,
    /// Where the notify socket is bound (see [`uml::launch::forward_socket`]).
    pub notify_socket: PathBuf,
    /// The kernel `Launch` runs unless its options name one, in any form `uml run --kernel`
    /// takes; `None`: the default kernel ([`uml::kernel::resolve`]), looked up at each launch so
    /// that `uml kernel use` takes effect without a restart.
    pub kernel: Option<String>,
    /// How long one mconsole receive may wait before GuestNotResponding.
    pub mconsole_timeout: Duration,
    /// How often the uml_dir is rescanned besides inotify.
    pub poll: Duration,
    /// How long an exited machine stays on the bus (State exited or crashed, ExitStatus)
    /// before MachineRemoved.
    pub keep_exited: Duration,
}

#[derive(Debug)]
pub(crate) struct Service {
    pub uml_dir: PathBuf,
    config: Config,
    conn: zbus::Connection,
    machines: Mutex<BTreeMap<String, Arc<MachineData>>>,
    manager_emitter: SignalEmitter<'static>,
    events: mpsc::UnboundedSender<Event>,
    uid: u32,
    /// Who may call what (see [`crate::access`]).
    pub access: Arc<Access>,
}

impl Service {
    pub(crate) fn new(
        config: Config,
        conn: zbus::Connection,
        events: mpsc::UnboundedSender<Event>,
        access: Arc<Access>,
    ) -> Result<Service, Error> {
        let manager_emitter = SignalEmitter::new(&conn, MANAGER_PATH)?.into_owned();
        Ok(Service {
            uml_dir: config.uml_dir.clone(),
            config,
            conn,
            machines: Mutex::new(BTreeMap::new()),
            manager_emitter,
            events,
            uid: nix::unistd::getuid().as_raw(),
            access,
        })
    }

    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<MachineData>>> {
        self.machines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn machines(&self) -> Vec<Arc<MachineData>> {
        self.map().values().cloned().collect()
    }

    pub(crate) fn get(&self, umid: &str) -> Result<Arc<MachineData>, Error> {
        let map = self.map();
        map.get(umid).cloned().ok_or_else(|| {
            let known: Vec<&str> = map.keys().map(String::as_str).collect();
            Error::NoSuchMachine(format!(
                "no machine \"{umid}\" in {} (known: {})",
                self.uml_dir.display(),
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ))
        })
    }

    /// Handles one event; never fails (problems are logged).
    pub(crate) async fn handle(self: &Arc<Self>, event: Event) {
        match event {
            Event::Instance(InstanceEvent::Changed(instance)) => {
                let known = self.map().get(&instance.umid).cloned();
                match (known, &instance.liveness) {
                    (Some(m), Liveness::Running) => self.socket_seen(&m).await,
                    (None, Liveness::Running | Liveness::Starting) => self.adopt(&instance).await,
                    // Exits are learnt from the exit watchers, which know the status.
                    _ => {}
                }
            }
            Event::Instance(InstanceEvent::Removed { .. }) => {}
            Event::Notify(received) => self.notified(received).await,
            Event::Exited { umid, pid, status } => self.exited(&umid, pid, status).await,
        }
    }

    /// Adds a machine found in the uml_dir, unless it is known or not the user's.
    pub(crate) async fn adopt(self: &Arc<Self>, instance: &Instance) {
        let Some(pid) = instance.pid else { return };
        let state = match instance.liveness {
            Liveness::Running => State::Running,
            Liveness::Starting => State::Starting,
            Liveness::Stale { .. } => return,
        };
        // In the service's uml_dir, the service's own; in a caller's (users/<uid>), that
        // caller's, and so its kernel (pid and mconsole socket).
        let Some(home) = instance.dir.parent().map(Path::to_owned) else {
            return;
        };
        let owner = if home == self.uml_dir {
            None
        } else {
            match crate::users::uid_of_dir(&self.uml_dir, &home) {
                Some(uid) => Some(uid),
                None => return,
            }
        };
        let expected = owner.unwrap_or(self.uid);
        let owned_by = |p: &Path| std::fs::symlink_metadata(p).map(|m| m.uid());
        match owned_by(&instance.dir) {
            Ok(uid) if uid == expected => {}
            Ok(uid) => {
                tracing::warn!(umid = %instance.umid, owner = uid,
                    "ignoring an instance owned by another user");
                return;
            }
            Err(_) => return,
        }
        if owner.is_some()
            && (owned_by(&home).ok() != Some(expected)
                || owned_by(&instance.mconsole_path()).ok() != Some(expected)
                || owned_by(Path::new(&format!("/proc/{pid}"))).ok() != Some(expected))
        {
            tracing::warn!(umid = %instance.umid, "ignoring an instance in a caller's uml_dir that is not all that caller's");
            return;
        }
        let data = match MachineData::new(
            &self.conn,
            &instance.umid,
            instance.mconsole_path(),
            false,
            self.config.mconsole_timeout,
            initial_props(pid, state),
            (home.clone(), owner),
        ) {
            Ok(d) => Arc::new(d),
            Err(e) => {
                tracing::warn!(umid = %instance.umid, "cannot adopt: {}", crate::error::chain(&e));
                return;
            }
        };
        self.make_way(&instance.umid).await;
        {
            let mut map = self.map();
            if map.contains_key(&instance.umid) {
                return;
            }
            map.insert(instance.umid.clone(), data.clone());
        }
        // Started by `uml run --detach` or by this service before a restart: its log is there.
        let log =
            uml::launch::runtime_dir(&home, &instance.umid).join(format!("{}.log", instance.umid));
        if log.is_file() {
            data.props().boot_log = log.display().to_string();
        }
        // Paused by anyone (or by the service before a restart): say so from the start.
        data.sync_run_state().await;
        // A socket bound anew from now on is a reboot.
        data.note_socket();
        if state == State::Running {
            // Up before the service saw it: no Booted for a boot that happened unseen.
            if data.userspace_running().await {
                data.props().userspace_up = true;
            } else {
                let d = data.clone();
                tokio::spawn(async move { watch_userspace(&d).await });
            }
        }
        tracing::info!(umid = %instance.umid, pid, state = data.state().as_str(), "adopted a machine");
        self.publish(&data).await;
        watch_pid(pid, instance.umid.clone(), self.events.clone());
        if state == State::Running {
            let d = data.clone();
            tokio::spawn(async move { refresh_while_booting(&d).await });
        }
    }

    async fn publish(&self, data: &Arc<MachineData>) {
        let iface = MachineIface {
            data: data.clone(),
            access: self.access.clone(),
        };
        if let Err(e) = self.conn.object_server().at(&data.path, iface).await {
            tracing::warn!(umid = %data.umid, "cannot serve the machine object: {e}");
        }
        self.announce("MachineNew", data).await;
    }

    /// Emits the Manager's MachineNew or MachineRemoved (declared in `manager.rs`) for `m`.
    async fn announce(&self, signal: &'static str, m: &MachineData) {
        let body = (m.umid.as_str(), m.path.as_ref());
        if let Err(e) = self
            .manager_emitter
            .emit(MANAGER_INTERFACE, signal, &body)
            .await
        {
            tracing::debug!("cannot emit {signal}: {e}");
        }
    }

    /// The machine's mconsole socket is there: the first time, its mconsole came up; a socket
    /// bound anew under the same pid is a reboot (the kernel re-executes itself and binds a
    /// new one). Told by the notify socket, the uml_dir watch and the state sync, whichever
    /// comes first; the others find the same socket and do nothing.
    async fn socket_seen(self: &Arc<Self>, m: &Arc<MachineData>) {
        if m.props().gone {
            return;
        }
        match m.note_socket() {
            Some((None, _)) => self.mark_booted(m).await,
            Some((Some(before), now)) if before != now => self.rebooted(m).await,
            // Adopted while starting, with its socket bound between discovery and adoption
            // (adoption notes the socket it finds): the same socket, and mconsole is up.
            Some(_) if m.state() == State::Starting => self.mark_booted(m).await,
            _ => {}
        }
    }

    async fn mark_booted(&self, m: &Arc<MachineData>) {
        if m.transition(State::Starting, State::Running).await {
            tracing::info!(umid = %m.umid, "machine's mconsole is up");
            if let Err(e) = MachineIface::mconsole_ready(m.emitter()).await {
                tracing::debug!("cannot emit MconsoleReady: {e}");
            }
            let d = m.clone();
            tokio::spawn(async move { refresh_while_booting(&d).await });
            let d = m.clone();
            tokio::spawn(async move { watch_userspace(&d).await });
        }
    }

    /// A known machine booted again (same pid: the kernel re-executed itself after a reboot).
    async fn rebooted(self: &Arc<Self>, m: &Arc<MachineData>) {
        m.reset_client().await;
        let during_shutdown = m.state() == State::Stopping;
        let reason = if during_shutdown {
            "shutdown"
        } else {
            "reboot"
        };
        tracing::info!(umid = %m.umid, reason, "machine rebooted");
        if let Err(e) = MachineIface::rebooted(m.emitter(), reason).await {
            tracing::debug!("cannot emit Rebooted: {e}");
        }
        if during_shutdown {
            // Power-off was asked for and ctrl-alt-del rebooted it: halt the new boot.
            if let Ok(c) = m.client().await {
                let _ = c.go().await;
                if let Err(e) = c.halt().await {
                    tracing::debug!(umid = %m.umid, "halt after the reboot: {e}");
                }
            }
        } else {
            m.set_userspace_up(false).await;
            m.set_state(State::Running).await;
            if let Err(e) = MachineIface::mconsole_ready(m.emitter()).await {
                tracing::debug!("cannot emit MconsoleReady: {e}");
            }
            let d = m.clone();
            tokio::spawn(async move { refresh_while_booting(&d).await });
            let d = m.clone();
            tokio::spawn(async move { watch_userspace(&d).await });
        }
    }

    /// Brings every running or paused machine's State in line with its kernel, and notices a
    /// socket that no notification or directory event told of: a starting machine's first
    /// (its mconsole came up; the directory watch can miss a socket bound just before the
    /// watch was set on a guest adopted while starting) or a reboot's new one.
    pub(crate) async fn sync_run_states(self: &Arc<Self>) {
        for m in self.machines() {
            if matches!(
                m.state(),
                State::Starting | State::Running | State::Paused | State::Stopping
            ) {
                self.socket_seen(&m).await;
            }
            m.sync_run_state().await;
        }
    }

    /// Adopts the guests in the callers' uml_dirs ([`crate::users`]) not known yet: those
    /// that were running when the service started, and any whose boot notice was missed.
    pub(crate) async fn scan_users(self: &Arc<Self>) {
        let uml_dir = self.uml_dir.clone();
        let found = tokio::task::spawn_blocking(move || {
            crate::users::existing(&uml_dir)
                .into_iter()
                .flat_map(|(_, dir)| uml::instance::discover(&dir).unwrap_or_default())
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for instance in found {
            if !self.map().contains_key(&instance.umid) {
                self.adopt(&instance).await;
            }
        }
    }

    /// Reads every running or paused machine's consoles and disks again: a pty line gets its
    /// device when the guest opens it, and anyone may add or change devices.
    pub(crate) fn refresh_devices(&self) {
        for m in self.machines() {
            // Each in its own task, one at a time per machine: a guest that does not answer
            // delays only itself.
            // Not while paused: nothing in the guest changes them then, and the requests would
            // keep the stopped kernel busy.
            if m.state() == State::Running && m.begin_refresh() {
                tokio::spawn(async move {
                    if let Ok(c) = m.client().await {
                        m.refresh_devices(&c).await;
                    }
                    m.end_refresh();
                });
            }
        }
    }

    async fn exited(self: &Arc<Self>, umid: &str, pid: u32, status: i32) {
        let m = {
            let map = self.map();
            match map.get(umid) {
                Some(m) if m.pid() == pid && !m.props().gone => Some(m.clone()),
                _ => None,
            }
        };
        let Some(m) = m else { return };
        tracing::info!(umid, pid, status, "machine exited");
        {
            let mut p = m.props();
            p.gone = true;
            p.exit_status = status;
        }
        m.emit_changed("ExitStatus", zbus::Variant::from(status))
            .await;
        if m.state() != State::Crashed {
            m.set_state(State::Exited).await;
        }
        if let Err(e) = MachineIface::exited(m.emitter(), status).await {
            tracing::debug!("cannot emit Exited: {e}");
        }
        if m.launched {
            // A panicked kernel's helpers outlive it; they share its process group.
            uml::instance::kill_group(pid);
        }
        // Readable for a while (its last state and exit status), then removed.
        let keep = self.config.keep_exited;
        let service = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(keep).await;
            service.forget(&m).await;
        });
    }

    /// Removes an exited machine's object, unless a new machine took its umid meanwhile.
    async fn forget(&self, m: &Arc<MachineData>) {
        {
            let mut map = self.map();
            match map.get(&m.umid) {
                Some(now) if Arc::ptr_eq(now, m) => {
                    map.remove(&m.umid);
                }
                _ => return,
            }
        }
        if let Err(e) = self
            .conn
            .object_server()
            .remove::<MachineIface, _>(&m.path)
            .await
        {
            tracing::debug!("cannot remove the machine object: {e}");
        }
        self.announce("MachineRemoved", m).await;
        if let (Some(uid), true) = (m.owner, m.launched) {
            crate::users::remove_runtime_files(&self.uml_dir, uid, &m.umid);
        }
    }

    /// A machine that exited and is only kept for queries makes way for a new one of its umid.
    async fn make_way(&self, umid: &str) {
        let old = self.map().get(umid).filter(|m| m.props().gone).cloned();
        if let Some(old) = old {
            self.forget(&old).await;
        }
    }

    async fn notified(self: &Arc<Self>, r: Sent) {
        // The service's user speaks for every guest; another user only for its own guests,
        // those in its uml_dir (users/<uid>), whose kernels run as it.
        let home = if r.uid == self.uid {
            self.uml_dir.clone()
        } else {
            crate::users::user_dir(&self.uml_dir, r.uid)
        };
        let owner = (r.uid != self.uid).then_some(r.uid);
        if let Notification::Socket { mconsole } = &r.notification {
            let Some(umid) = umid_of_socket(&home, mconsole) else {
                tracing::debug!(path = %mconsole.display(), uid = r.uid,
                    "a guest of another uml_dir (or of another user) booted");
                return;
            };
            let known = self.map().get(&umid).cloned();
            match known {
                Some(m) if m.home == home => self.socket_seen(&m).await,
                Some(_) => {}
                None => {
                    if let Some(instance) = uml::instance::find_existing(&home, &umid) {
                        self.adopt(&instance).await;
                    }
                }
            }
            return;
        }
        let Some(m) = self.machine_of_sender(r.pid) else {
            tracing::debug!(pid = r.pid, "a notification from no known machine");
            return;
        };
        if owner.is_some() && m.owner != owner {
            tracing::warn!(pid = r.pid, uid = r.uid, umid = %m.umid,
                "dropping a notification from another user about a guest not its own");
            return;
        }
        let result = match r.notification {
            Notification::Panic { message } => {
                let mut message = message.trim_end_matches('\0').trim().to_owned();
                // A known incompatibility of kernel and host (the XSAVE/AMX failure of kernels
                // before 7.0) shows in the boot log well before the panic: name it, with the
                // line that shows it, so a caller sees the cause and not only "killed init".
                if let Some(d) = self.diagnose_launched(&m).await {
                    tracing::warn!(umid = %m.umid, line = %d.line, "{}; fix: {}", d.cause, d.fix);
                    message = format!(
                        "{message}: {} (the kernel said: {}); fix: {}",
                        d.cause, d.line, d.fix
                    );
                }
                tracing::warn!(umid = %m.umid, %message, "machine panicked");
                m.set_state(State::Crashed).await;
                MachineIface::panicked(m.emitter(), &message).await
            }
            Notification::Hang => MachineIface::hung(m.emitter()).await,
            Notification::User { data } => {
                let text = String::from_utf8_lossy(&data);
                MachineIface::notified(m.emitter(), text.trim_end_matches('\0')).await
            }
            Notification::Socket { .. } => Ok(()),
        };
        if let Err(e) = result {
            tracing::debug!("cannot emit a machine signal: {e}");
        }
    }

    /// The diagnosis of a machine this service launched, from its boot log (kept where
    /// the launch writes it).
    async fn diagnose_launched(
        &self,
        m: &MachineData,
    ) -> Option<uml::kernel::diagnosis::Diagnosis> {
        if !m.launched {
            return None;
        }
        let kernel = PathBuf::from(m.props().command_line.first()?);
        let log = uml::launch::runtime_dir(&m.home, &m.umid).join(format!("{}.log", m.umid));
        // Reads the log, and profiles the kernel (a bounded `linux --version`) on a match.
        tokio::task::spawn_blocking(move || uml::launch::diagnose_log(&log, &kernel))
            .await
            .ok()
            .flatten()
    }

    /// The machine a notification came from: the kernel itself, its parent (a launcher that
    /// forwards datagrams) or its child (`uml_watchdog`, which the kernel starts).
    fn machine_of_sender(&self, pid: u32) -> Option<Arc<MachineData>> {
        let machines: Vec<_> = self
            .machines()
            .into_iter()
            .filter(|m| !m.props().gone)
            .collect();
        if let Some(m) = machines.iter().find(|m| m.pid() == pid) {
            return Some(m.clone());
        }
        let parent = uml::procfs::parent(pid);
        machines
            .into_iter()
            .find(|m| Some(m.pid()) == parent || uml::procfs::parent(m.pid()) == Some(pid))
    }

    /// `Manager.Launch`.
    pub(crate) async fn launch(
        self: &Arc<Self>,
        caller: &crate::access::Caller,
        options: HashMap<String, OwnedVariant>,
    ) -> Result<OwnedObjectPath, Error> {
        let opts = LaunchOptions::parse(options)?;
        // Resolving and profiling the kernel, checking the argv and starting a named switch
        // all touch the disk or run programs: off the executor.
        let service = self.clone();
        let who = caller.clone();
        let plan = tokio::task::spawn_blocking(move || service.plan(opts, &who))
            .await
            .map_err(|e| Error::Failed(format!("the launch task failed: {e}")))??;
        let umid = plan.launch.umid.clone();
        let owner = plan.user.as_ref().map(|u| u.0.uid);
        if let Some((_, dir)) = &plan.user {
            // Its kernel must reach its uml_dir as itself: every directory above it must let
            // the caller through.
            let need = [(dir.runtime.clone(), crate::access::Need::WritableDir)];
            crate::access::check_paths(caller, &need).await.map_err(|_| {
                Error::LaunchFailed(format!(
                    "uid {} cannot reach {} itself, where its guest would run as it; umld --system needs a --uml-dir that every user may search (mode 0711 or 0755 on it and the directories above)",
                    caller.uid,
                    dir.dir.display()
                ))
            })?;
        }
        let data = Arc::new(MachineData::new(
            &self.conn,
            &umid,
            plan.launch.uml_dir.join(&umid).join("mconsole"),
            true,
            self.config.mconsole_timeout,
            initial_props(0, State::Starting),
            (plan.launch.uml_dir.clone(), owner),
        )?);
        self.make_way(&umid).await;
        {
            let mut map = self.map();
            if map.contains_key(&umid) {
                return Err(Error::InvalidArgument(format!(
                    "umid \"{umid}\" is already a machine; choose another"
                )));
            }
            map.insert(umid.clone(), data.clone());
        }
        let launch = plan.launch.clone();
        let guest = plan.guest;
        let user = plan.user;
        let spawned =
            tokio::task::spawn_blocking(move || start(&launch, guest.as_ref(), user.as_ref()))
                .await
                .map_err(|e| Error::Failed(format!("the launch task failed: {e}")))
                .and_then(|r| r);
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                self.map().remove(&umid);
                return Err(e);
            }
        };
        let pid = child.id();
        {
            let mut p = data.props();
            p.pid = pid;
            p.command_line = std::iter::once(plan.launch.kernel.display().to_string())
                .chain(plan.argv.iter().cloned())
                .collect();
            p.boot_time = uml::procfs::start_time_us(pid).unwrap_or(0);
            p.read_only = crate::machine::read_only_units(&plan.argv);
            p.boot_log = plan.boot_log.display().to_string();
        }
        tracing::info!(%umid, pid, "launched a machine");
        self.publish(&data).await;
        let events = self.events.clone();
        tokio::spawn(async move {
            // The pidfd turns readable when the kernel exits; reaping it then does not block.
            uml::pidfd::exited(pid).await;
            let status = match child.try_wait() {
                Ok(Some(s)) => status_code(s),
                _ => tokio::task::spawn_blocking(move || child.wait())
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .map_or(-1, status_code),
            };
            // A panicking kernel sends its notification right before it aborts; let the
            // notify socket deliver it first, so Panicked precedes Exited.
            tokio::time::sleep(EXIT_SETTLE).await;
            let _ = events.send(Event::Exited { umid, pid, status });
        });
        Ok(data.path.clone())
    }

    /// What Launch will start: the kernel, its argv and the library's launch, all checked
    /// (by the option model, against the uml_dir) before anything is started. Blocking.
    fn plan(&self, opts: LaunchOptions, caller: &crate::access::Caller) -> Result<Plan, Error> {
        // A caller other than root or the service's user: its own uml_dir, its kernel runs
        // as it.
        let user = if caller.trusted {
            None
        } else {
            let dir = crate::users::prepare(&self.uml_dir, caller)?;
            Some((
                uml::launch::RunAs {
                    uid: caller.uid,
                    gid: caller.gid,
                    groups: caller.groups.clone(),
                },
                dir,
            ))
        };
        let home = user
            .as_ref()
            .map_or_else(|| self.uml_dir.clone(), |(_, d)| d.dir.clone());
        let kernel_choice = opts.kernel.clone().or_else(|| self.config.kernel.clone());
        let kernel = uml::kernel::resolve(kernel_choice.as_deref())
            .map_err(|e| Error::InvalidArgument(format!("kernel: {}", crate::error::chain(&e))))?;
        let umid_choice = opts.umid.clone();
        let (kernel_args, guest) = match opts.kernel_args.clone() {
            Some(raw) => (raw, None),
            None => {
                let umid = umid_choice.clone().unwrap_or_else(uml::launch::fresh_umid);
                let (args, guest) = opts.guest_args(&home, &umid, &kernel)?;
                (args, Some((umid, guest)))
            }
        };
        let umid = match (&guest, umid_choice) {
            (Some((u, _)), _) => Some(u.clone()),
            (None, u) => u,
        };
        let args = self.launch_argv(kernel_args, umid, &home)?;
        let umid = args
            .iter()
            .rev()
            .find_map(|a| a.strip_prefix("umid="))
            .unwrap_or_default()
            .to_owned();
        // The argv as the kernel gets it: the launcher adds the notify socket.
        let mut argv = args.clone();
        argv.push(format!(
            "mconsole=notify:{}",
            self.config.notify_socket.display()
        ));
        // Checked against the kernel that will run, not the default one.
        let profile = uml::kernel::Profile::read(&kernel);
        let aslr_off = profile
            .as_ref()
            .is_ok_and(uml::launch::reexecs_without_aslr);
        let env = match profile {
            Ok(profile) => uml::check::CheckEnv::from_process_for(profile),
            Err(e) => {
                tracing::debug!(
                    "{}: {e}; checking against the default kernel",
                    kernel.display()
                );
                uml::check::CheckEnv::from_process()
            }
        };
        let report = uml::check::check(
            &uml::cmdline::CommandLine::parse(&argv),
            &uml::check::CheckEnv {
                default_uml_dir: Some(home.clone()),
                ..env
            },
        );
        if report.has_errors() {
            let errors: Vec<String> = report
                .findings
                .iter()
                .filter(|f| f.severity == uml::check::Severity::Error)
                .map(|f| match &f.arg {
                    Some(arg) => format!("{arg}: {}", f.message),
                    None => f.message.clone(),
                })
                .collect();
            return Err(Error::InvalidArgument(format!(
                "the kernel would not accept this command line: {}",
                errors.join("; ")
            )));
        }
        // Before anything is written in its runtime directory (the init script).
        // A umid names one machine on the bus, whichever uml_dir it lives in.
        for dir in [&self.uml_dir, &home] {
            if let Some(existing) = uml::instance::find_existing(dir, &umid)
                && !matches!(existing.liveness, Liveness::Stale { .. })
            {
                return Err(umid_in_use(&umid, existing.pid.unwrap_or(0)));
            }
        }
        if let Some(m) = self.map().get(&umid)
            && !m.props().gone
        {
            return Err(umid_in_use(&umid, m.pid()));
        }
        let runtime = uml::launch::runtime_dir(&home, &umid);
        if let Some((_, dir)) = &user
            && runtime != dir.runtime
        {
            return Err(Error::LaunchFailed(format!(
                "{} is too long a path for the guest's sockets; run umld with a shorter --uml-dir",
                dir.runtime.display()
            )));
        }
        if user.is_none() {
            // The runtime directory (or its fallback under /tmp, which another user could have
            // made first) must be this user's alone before the init and log are written there.
            uml::instance::private_dir(&runtime)
                .map_err(|e| Error::LaunchFailed(crate::error::chain(&e)))?;
        }
        let boot_log = runtime.join(format!("{umid}.log"));
        // Each guest on one host CPU, the guests spread over them (uml::launch::guest_cpu).
        let cpu = uml::launch::guest_cpu(&args, Some(&home));
        Ok(Plan {
            launch: uml::launch::Launch {
                kernel,
                args,
                cpu,
                umid: umid.clone(),
                uml_dir: home,
                console: uml::launch::Console::Log {
                    log: boot_log.clone(),
                },
                // Relative paths of kernel_args resolve in the launch's private directory,
                // as with `uml run --detach`.
                cwd: runtime,
                notify_socket: self.config.notify_socket.clone(),
                aslr_off,
            },
            argv,
            guest: guest.and_then(|(_, g)| g),
            boot_log,
            user,
        })
    }

    /// The user's arguments plus umid and uml_dir (the launcher adds the notify socket).
    fn launch_argv(
        &self,
        args: Vec<String>,
        umid: Option<String>,
        home: &Path,
    ) -> Result<Vec<String>, Error> {
        let given_umid = args.iter().rev().find_map(|a| a.strip_prefix("umid="));
        let umid = match (umid, given_umid) {
            (Some(o), Some(a)) if o != a => {
                return Err(Error::InvalidArgument(format!(
                    "the umid option \"{o}\" contradicts the argument umid={a}; give one of them"
                )));
            }
            (Some(o), _) => Some(o),
            (None, Some(a)) => Some(a.to_owned()),
            (None, None) => None,
        };
        if let Some(dir) = args.iter().rev().find_map(|a| a.strip_prefix("uml_dir="))
            && Path::new(dir.trim_end_matches('/')) != home
        {
            return Err(Error::InvalidArgument(format!(
                "uml_dir={dir}: this service launches in {}; drop the argument or run umld --uml-dir {dir}",
                home.display()
            )));
        }
        let mut argv: Vec<String> = args
            .into_iter()
            .filter(|a| !a.starts_with("umid=") && !a.starts_with("uml_dir="))
            .collect();
        if argv.iter().any(|a| a.starts_with("mconsole=notify:")) {
            return Err(Error::InvalidArgument(
                "mconsole=notify: is set by the service (it listens there); drop it".into(),
            ));
        }
        argv.push(format!(
            "umid={}",
            umid.unwrap_or_else(uml::launch::fresh_umid)
        ));
        argv.push(format!("uml_dir={}", home.display()));
        Ok(argv)
    }
}

/// Emits Booted once the guest's userspace runs: pid 1 executed a program, and the guest has
/// not crashed a moment later (a kernel that cannot run its init panics right away).
async fn watch_userspace(m: &MachineData) {
    let deadline = tokio::time::Instant::now() + USERSPACE_WAIT;
    while tokio::time::Instant::now() < deadline {
        match m.state() {
            State::Exited | State::Crashed | State::Stopping => return,
            State::Running if m.userspace_running().await => {
                tokio::time::sleep(BOOT_SETTLE).await;
                if m.state() == State::Running && m.set_userspace_up(true).await {
                    tracing::info!(umid = %m.umid, "machine booted (userspace runs)");
                    if let Err(e) = MachineIface::booted(m.emitter()).await {
                        tracing::debug!("cannot emit Booted: {e}");
                    }
                }
                return;
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tracing::warn!(umid = %m.umid, "the guest's userspace did not start within {USERSPACE_WAIT:?}");
}

/// The mconsole comes up before the console drivers register their lines (both are
/// initcalls), so the devices are read again a little later; and a guest too busy to answer
/// in time (many booting at once) is asked again until it has told its version.
async fn refresh_while_booting(m: &MachineData) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut again = [500, 2000].into_iter();
    loop {
        if matches!(m.state(), State::Exited | State::Crashed) {
            return;
        }
        if m.begin_refresh() {
            m.refresh().await;
            m.end_refresh();
        }
        let delay = if m.props().kernel_version.is_empty() {
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(umid = %m.umid, "the guest never answered version; giving up");
                return;
            }
            500
        } else {
            match again.next() {
                Some(d) => d,
                None => return,
            }
        };
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
}

fn initial_props(pid: u32, state: State) -> Props {
    let command_line = uml::procfs::command_line(pid);
    Props {
        pid,
        state,
        kernel_version: String::new(),
        read_only: crate::machine::read_only_units(&command_line),
        command_line,
        consoles: BTreeMap::new(),
        disks: BTreeMap::new(),
        memory_bytes: 0,
        boot_time: uml::procfs::start_time_us(pid).unwrap_or(0),
        userspace_up: false,
        exit_status: -1,
        gone: false,
        boot_log: String::new(),
    }
}

/// A checked launch, ready to start.
#[derive(Debug)]
struct Plan {
    launch: uml::launch::Launch,
    /// The kernel's argv as it gets it (CommandLine), the notify socket included.
    argv: Vec<String>,
    /// The built-in guest whose init is written before the kernel starts.
    guest: Option<uml::launch::DefaultGuest>,
    /// Where the kernel's output and boot log go.
    boot_log: PathBuf,
    /// A caller's launch: who the kernel runs as, and the caller's uml_dir it runs in.
    user: Option<(uml::launch::RunAs, crate::users::UserDir)>,
}

/// Writes the built-in guest's init and starts the kernel through the library's launcher, for
/// the service's notify socket; the kernel outlives the service (a restarted service adopts
/// it again). Blocking.
fn start(
    launch: &uml::launch::Launch,
    guest: Option<&uml::launch::DefaultGuest>,
    user: Option<&(uml::launch::RunAs, crate::users::UserDir)>,
) -> Result<std::process::Child, Error> {
    let spawned = if let Some((run_as, dir)) = user {
        // The caller's directory: its init and log are made through descriptors, its own.
        if let Some(guest) = guest {
            dir.create(
                &format!("{}.init", launch.umid),
                0o755,
                guest.init_script().as_bytes(),
            )?;
        }
        let log = dir.create(&format!("{}.log", launch.umid), 0o644, b"")?;
        launch.spawn_child_as(log, run_as)
    } else {
        start_own(launch, guest)?;
        launch.spawn_child()
    };
    spawned.map_err(|e| match e {
        uml::launch::LaunchError::UmidInUse { umid, pid } => umid_in_use(&umid, pid),
        uml::launch::LaunchError::Kernel { kernel, source } => Error::LaunchFailed(format!(
            "cannot run the UML kernel {}: {source} (pass the \"kernel\" option or umld --kernel)",
            kernel.display()
        )),
        other => Error::LaunchFailed(crate::error::chain(&other)),
    })
}

/// Writes the built-in guest's init for a guest of the service's own.
fn start_own(
    launch: &uml::launch::Launch,
    guest: Option<&uml::launch::DefaultGuest>,
) -> Result<(), Error> {
    if let Some(guest) = guest {
        let init = launch.cwd.join(format!("{}.init", launch.umid));
        std::fs::create_dir_all(&launch.cwd)
            .map_err(|e| e.to_string())
            .and_then(|()| guest.write_init(&init).map_err(|e| e.to_string()))
            .map_err(|e| Error::LaunchFailed(format!("cannot write the guest's init: {e}")))?;
    }
    Ok(())
}

fn umid_in_use(umid: &str, pid: u32) -> Error {
    Error::InvalidArgument(format!(
        "umid \"{umid}\" is already in use by pid {pid}; choose another"
    ))
}

/// Sends [`Event::Exited`] (status unknown: -1) when `pid` ends ([`uml::pidfd::exited`]).
fn watch_pid(pid: u32, umid: String, events: mpsc::UnboundedSender<Event>) {
    tokio::spawn(async move {
        uml::pidfd::exited(pid).await;
        tokio::time::sleep(EXIT_SETTLE).await;
        let _ = events.send(Event::Exited {
            umid,
            pid,
            status: -1,
        });
    });
}

fn status_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

/// `<uml_dir>/<umid>/mconsole` → umid, for sockets in our uml_dir only.
fn umid_of_socket(uml_dir: &Path, mconsole: &Path) -> Option<String> {
    let dir = mconsole.parent()?;
    if dir.parent()? != uml_dir {
        return None;
    }
    dir.file_name()?.to_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sockets_directly_in_the_uml_dir_name_a_machine() {
        let dir = Path::new("/h/.uml");
        assert_eq!(
            umid_of_socket(dir, Path::new("/h/.uml/web1/mconsole")).as_deref(),
            Some("web1")
        );
        assert_eq!(umid_of_socket(dir, Path::new("/other/web1/mconsole")), None);
        assert_eq!(umid_of_socket(dir, Path::new("/mconsole")), None);
    }
}

/// `Manager.Launch`'s options: `uml run`'s vocabulary, or the whole kernel command line.
#[derive(Debug, Default)]
struct LaunchOptions {
    umid: Option<String>,
    kernel: Option<String>,
    mem: Option<String>,
    disks: Vec<String>,
    root: Option<String>,
    rw: Vec<String>,
    net: Vec<String>,
    command: Option<Vec<String>>,
    shell: Option<bool>,
    kernel_args: Option<Vec<String>>,
}

const LAUNCH_OPTIONS: &str = "umid (s), kernel (s), mem (s), disks (as), root (s), rw (as), net (as), command (as), shell (b), kernel_args (as)";

impl LaunchOptions {
    fn parse(options: HashMap<String, OwnedVariant>) -> Result<LaunchOptions, Error> {
        let mut o = LaunchOptions::default();
        for (key, value) in options {
            let bad =
                |ty: &str| Error::InvalidArgument(format!("option {key:?} must be of type {ty}"));
            let text = |v: OwnedVariant| String::try_from(v).map_err(|_| bad("s"));
            let list = |v: OwnedVariant| Vec::<String>::try_from(v).map_err(|_| bad("as"));
            match key.as_str() {
                "umid" => o.umid = Some(text(value)?),
                // A path, a release built by `uml kernel build` (7.2), or a command on PATH.
                "kernel" => o.kernel = Some(text(value)?),
                "mem" => o.mem = Some(text(value)?),
                "disks" => o.disks = list(value)?,
                // A disk image booted as / with its own init, as `uml run --root`.
                "root" => o.root = Some(text(value)?),
                "rw" => o.rw = list(value)?,
                "net" => o.net = list(value)?,
                "command" => o.command = Some(list(value)?),
                "shell" => o.shell = Some(bool::try_from(value).map_err(|_| bad("b"))?),
                "kernel_args" => o.kernel_args = Some(list(value)?),
                other => {
                    return Err(Error::InvalidArgument(format!(
                        "unknown option {other:?}; accepted: {LAUNCH_OPTIONS}"
                    )));
                }
            }
        }
        let typed = o.mem.is_some()
            || !o.disks.is_empty()
            || o.root.is_some()
            || !o.rw.is_empty()
            || !o.net.is_empty()
            || o.command.is_some()
            || o.shell.is_some();
        if o.kernel_args.is_some() && typed {
            return Err(Error::InvalidArgument(
                "kernel_args is the whole kernel command line; it cannot be combined with mem, disks, root, rw, net, command or shell".into(),
            ));
        }
        if o.command.as_ref().is_some_and(Vec::is_empty) {
            return Err(Error::InvalidArgument("command is empty".into()));
        }
        if o.root.is_some() && (o.command.is_some() || o.shell.is_some() || !o.rw.is_empty()) {
            return Err(Error::InvalidArgument(
                "root boots the image's own init; it cannot be combined with command, shell or rw"
                    .into(),
            ));
        }
        if o.command.is_some() && o.shell == Some(true) {
            return Err(Error::InvalidArgument(
                "give command or shell, not both".into(),
            ));
        }
        Ok(o)
    }

    /// The built-in guest of `uml run` ([`uml::launch::DefaultGuest`]) with these options.
    fn guest_args(
        &self,
        uml_dir: &Path,
        umid: &str,
        kernel: &Path,
    ) -> Result<(Vec<String>, Option<uml::launch::DefaultGuest>), Error> {
        use uml::launch::{DefaultGuest, Payload};
        // `ip=ADDR/PREFIX` fields of the net specs: the guest's address, on its command line.
        let mut specs = Vec::new();
        let mut addresses = Vec::new();
        for spec in &self.net {
            let (rest, address) = uml::net::split_guest_address(spec)
                .map_err(|e| Error::InvalidArgument(format!("net {e}")))?;
            specs.push(rest);
            addresses.push(address);
        }
        let nets = |args: &mut Vec<String>| -> Result<(), Error> {
            let net = net_args(&specs, uml_dir, umid, kernel)?;
            for (arg, address) in net.iter().zip(&addresses) {
                if let Some(a) = address {
                    args.push(a.kernel_word(arg.split(['=', ':']).next().unwrap_or_default()));
                }
            }
            args.extend(net);
            Ok(())
        };
        if let Some(root) = &self.root {
            let profile = uml::kernel::Profile::read(kernel).map_err(|e| {
                Error::InvalidArgument(format!("kernel: {}", crate::error::chain(&e)))
            })?;
            let mut args = uml::launch::DiskGuest {
                root: uml::launch::disk_arg(0, root, None)
                    .map_err(|e| Error::InvalidArgument(format!("root: {e}")))?,
                hostname: umid.to_owned(),
                detached: true,
            }
            .kernel_args(
                self.mem.as_deref().unwrap_or("256M"),
                umid,
                uml_dir,
                &profile,
            );
            for (unit, spec) in self.disks.iter().enumerate() {
                args.push(
                    uml::launch::disk_arg(unit + 1, spec, None).map_err(Error::InvalidArgument)?,
                );
            }
            nets(&mut args)?;
            return Ok((args, None));
        }
        let mut writable = Vec::new();
        for d in &self.rw {
            let p = Path::new(d);
            if !p.is_absolute() {
                return Err(Error::InvalidArgument(format!(
                    "rw {d}: a relative path; give an absolute one"
                )));
            }
            if !p.is_dir() {
                return Err(Error::InvalidArgument(format!("rw {d}: no such directory")));
            }
            writable.push(p.to_owned());
        }
        let payload = match &self.command {
            Some(c) => Payload::Command(c.clone()),
            // A desktop guest: a shell on a host pty (OpenConsole("con0")), respawned.
            None => Payload::RespawningShell,
        };
        let shell = payload == Payload::RespawningShell;
        let guest = DefaultGuest {
            payload,
            cwd: PathBuf::from("/"),
            env: vec![("TERM".into(), "linux".into())],
            writable,
            stdin_tty: shell,
            stdout_tty: shell,
        };
        let init = uml::launch::runtime_dir(uml_dir, umid).join(format!("{umid}.init"));
        let mut args =
            guest.kernel_args(&init, self.mem.as_deref().unwrap_or("256M"), umid, uml_dir);
        if shell {
            for a in &mut args {
                if a.starts_with("con0=") {
                    *a = "con0=pts".into();
                }
            }
        }
        for (unit, spec) in self.disks.iter().enumerate() {
            args.push(uml::launch::disk_arg(unit, spec, None).map_err(Error::InvalidArgument)?);
        }
        nets(&mut args)?;
        Ok((args, Some(guest)))
    }
}

/// The kernel arguments of Launch's `net` specs, in `uml run --net`'s vocabulary
/// ([`uml::net::Spec`]): each checked against the kernel that will run before anything
/// starts. `switch:NAME` joins, or starts with the `uml` command on PATH, the named switch of
/// umld's uml dir, as `uml run` does. umld never creates a host device: a `tap:` device must
/// exist (`ip tuntap add`, as root).
fn net_args(
    specs: &[String],
    uml_dir: &Path,
    umid: &str,
    kernel: &Path,
) -> Result<Vec<String>, Error> {
    use uml::net::Spec;
    if specs.is_empty() {
        return Ok(Vec::new());
    }
    let bad =
        |spec: &str, e: &dyn std::fmt::Display| Error::InvalidArgument(format!("net {spec}: {e}"));
    let profile = uml::kernel::Profile::read(kernel)
        .map_err(|e| Error::InvalidArgument(format!("kernel: {}", crate::error::chain(&e))))?;
    let bess_only = uml::net::bess_only(&profile);
    let mut args = Vec::new();
    for (unit, spec) in specs.iter().enumerate() {
        let parsed = Spec::parse(spec).map_err(|e| bad(spec, &e))?;
        parsed.require(spec, &profile).map_err(|e| bad(spec, &e))?;
        let mac = uml::net::mac_for(umid, unit);
        match &parsed {
            Spec::L2tpv3(t) | Spec::Gre(t) => t.check_local(spec).map_err(|e| bad(spec, &e))?,
            Spec::Tap(tap) if !Path::new("/sys/class/net").join(&tap.dev).exists() => {
                return Err(bad(
                    spec,
                    &format!(
                        "the tap device {} does not exist; umld does not create host devices (as root: ip tuntap add {} mode tap user $USER)",
                        tap.dev, tap.dev
                    ),
                ));
            }
            Spec::Switch { name } => {
                let uml = uml::kernel::on_path("uml")
                    .ok_or_else(|| bad(spec, &"starting a switch needs the uml command on PATH"))?;
                let sockets = uml::switch::named::ensure(uml_dir, name, bess_only, &uml)
                    .map_err(|e| bad(spec, &e))?;
                args.push(
                    sockets
                        .port_arg(unit, &mac, bess_only)
                        .map_err(|e| bad(spec, &e))?,
                );
                continue;
            }
            _ => {}
        }
        let arg = parsed
            .kernel_arg(spec, unit, &mac, &profile)
            .map_err(|e| bad(spec, &e))?
            .ok_or_else(|| bad(spec, &"no kernel argument"))?;
        args.push(arg);
    }
    Ok(args)
}
