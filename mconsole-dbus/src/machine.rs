//! `org.umlkit.uml1.Machine`: one object per guest, a thin adapter over
//! [`uml::mconsole::AsyncClient`] and [`uml::instance`].
//!
//! Property values are cached in [`MachineData`] and refreshed in the background (after boot,
//! after `Config`/`Remove`), so a property read or `GetManagedObjects` never waits for a guest.
//! Every mconsole call has a deadline, and each machine has its own client, so a guest that
//! stops answering delays only the calls made to it.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use uml::mconsole::AsyncClient;
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::{Variant, interface};

use crate::access::Action;
use crate::error::Error;

/// The life cycle of a machine, as the `State` property spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Starting,
    Running,
    Paused,
    Stopping,
    Exited,
    Crashed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Running => "running",
            State::Paused => "paused",
            State::Stopping => "stopping",
            State::Exited => "exited",
            State::Crashed => "crashed",
        }
    }
}

/// A disk as the `Disks` property shows it: file, backing file (empty without COW), read-only.
pub type Disk = (String, String, bool);

/// The cached, changeable facts about one machine.
#[derive(Debug, Clone)]
pub(crate) struct Props {
    pub pid: u32,
    pub state: State,
    pub kernel_version: String,
    pub command_line: Vec<String>,
    pub consoles: BTreeMap<String, String>,
    pub disks: BTreeMap<String, Disk>,
    pub memory_bytes: u64,
    pub boot_time: u64,
    /// ubd units and whether they were set up read-only (see [`ubd_unit`]).
    pub read_only: BTreeMap<String, bool>,
    /// The guest's pid 1 runs a program (Booted was or would have been emitted).
    pub userspace_up: bool,
    /// The kernel's exit status once it exited (see the Exited signal); -1 before, or unknown.
    pub exit_status: i32,
    /// The kernel is gone; the object stays for a while (Config::keep_exited).
    pub gone: bool,
    /// Where the kernel's console output and boot messages go (launched machines).
    pub boot_log: String,
}

/// One machine, shared by its D-Bus object and the service's event loop.
#[derive(Debug)]
pub(crate) struct MachineData {
    pub umid: String,
    pub path: zbus::OwnedObjectPath,
    pub mconsole: PathBuf,
    /// Started by this service (it is the kernel's parent and reaps it).
    pub launched: bool,
    pub timeout: Duration,
    /// The uml_dir the machine lives in: the service's, or a caller's
    /// ([`crate::users::user_dir`]).
    pub home: PathBuf,
    /// The caller whose uml_dir it lives in, whose uid its kernel runs as; `None` in the
    /// service's own uml_dir.
    pub owner: Option<u32>,
    props: Mutex<Props>,
    client: tokio::sync::Mutex<Option<Arc<AsyncClient>>>,
    emitter: SignalEmitter<'static>,
    /// Bumped by every Pause and Resume: a state sample taken across one is dropped.
    epoch: AtomicU64,
    /// The mconsole socket file last seen (device, inode, change time): a kernel that reboots
    /// binds a new one under the same pid, whoever started it.
    socket: Mutex<Option<SocketIdentity>>,
    /// A periodic device refresh is under way.
    refreshing: AtomicBool,
}

impl MachineData {
    pub(crate) fn new(
        conn: &zbus::Connection,
        umid: &str,
        mconsole: PathBuf,
        launched: bool,
        timeout: Duration,
        props: Props,
        home: (PathBuf, Option<u32>),
    ) -> Result<MachineData, Error> {
        let path = zbus::OwnedObjectPath::try_from(crate::object_path::machine_path(umid))
            .map_err(|e| Error::Failed(format!("no object path for umid {umid:?}: {e}")))?;
        let emitter = SignalEmitter::new(conn, path.clone())?.into_owned();
        Ok(MachineData {
            umid: umid.to_owned(),
            path,
            mconsole,
            launched,
            timeout,
            home: home.0,
            owner: home.1,
            props: Mutex::new(props),
            client: tokio::sync::Mutex::new(None),
            emitter,
            epoch: AtomicU64::new(0),
            socket: Mutex::new(None),
            refreshing: AtomicBool::new(false),
        })
    }

    pub(crate) fn props(&self) -> MutexGuard<'_, Props> {
        self.props
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn state(&self) -> State {
        self.props().state
    }

    pub(crate) fn pid(&self) -> u32 {
        self.props().pid
    }

    pub(crate) fn emitter(&self) -> &SignalEmitter<'static> {
        &self.emitter
    }

    /// Sets the state and emits `PropertiesChanged` when it changed; returns the old one.
    pub(crate) async fn set_state(&self, state: State) -> State {
        let old = std::mem::replace(&mut self.props().state, state);
        if old != state {
            self.emit_changed("State", Variant::from(state.as_str()))
                .await;
        }
        old
    }

    /// Changes the state only when it is `from` (compare and swap); true when it changed.
    pub(crate) async fn transition(&self, from: State, to: State) -> bool {
        let changed = {
            let mut p = self.props();
            if p.state == from {
                p.state = to;
                true
            } else {
                false
            }
        };
        if changed {
            self.emit_changed("State", Variant::from(to.as_str())).await;
        }
        changed
    }

    pub(crate) async fn emit_changed(&self, name: &str, value: Variant<'_>) {
        let mut changed = HashMap::new();
        changed.insert(name, value);
        let iface = zbus::names::InterfaceName::from_static_str_unchecked(MACHINE_INTERFACE);
        if let Err(e) = zbus::fdo::Properties::properties_changed(
            &self.emitter,
            iface,
            changed,
            std::borrow::Cow::Borrowed(&[]),
        )
        .await
        {
            tracing::debug!(umid = %self.umid, "cannot emit PropertiesChanged: {e}");
        }
    }

    /// This machine's mconsole client (connected on first use, then reused).
    pub(crate) async fn client(&self) -> Result<Arc<AsyncClient>, Error> {
        let mut slot = self.client.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let connected = match self.owner {
            None => AsyncClient::connect(&self.mconsole).await,
            // A caller's directory: the socket file itself (no symlink the caller put there to
            // another guest's socket), the caller's, as its kernel is.
            Some(uid) => {
                let file = self.owned_socket(uid)?;
                AsyncClient::connect_checked(&self.mconsole, file).await
            }
        };
        let client = connected
            .map_err(|e| self.mconsole_error(e))?
            .with_timeout(self.timeout)
            .with_deadline(self.timeout.saturating_mul(4));
        let client = Arc::new(client);
        *slot = Some(client.clone());
        Ok(client)
    }

    /// The mconsole socket of a guest in `uid`'s uml_dir, opened `O_PATH` without following a
    /// symlink, once it is a socket of `uid`'s and the kernel runs as `uid`.
    fn owned_socket(&self, uid: u32) -> Result<std::os::fd::OwnedFd, Error> {
        use nix::fcntl::OFlag;
        use std::os::unix::fs::MetadataExt;
        let refuse = |why: String| {
            Error::Failed(format!(
                "will not talk to {}: {why}",
                self.mconsole.display()
            ))
        };
        let fd = nix::fcntl::open(
            &self.mconsole,
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| refuse(format!("cannot open it: {e}")))?;
        let st = nix::sys::stat::fstat(&fd).map_err(|e| refuse(e.to_string()))?;
        if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
            return Err(refuse(
                "it is not a socket (a symlink or another file)".into(),
            ));
        }
        let kernel = std::fs::metadata(format!("/proc/{}", self.pid())).map(|m| m.uid());
        if st.st_uid != uid || kernel.ok() != Some(uid) {
            return Err(refuse(format!(
                "it or its kernel is not uid {uid}'s, whose guest this is"
            )));
        }
        Ok(fd)
    }

    /// Every property of the Machine interface, for GetManagedObjects (its Properties.GetAll).
    pub(crate) fn all_properties(&self) -> HashMap<String, zbus::OwnedVariant> {
        let p = self.props().clone();
        let mut all = HashMap::new();
        let mut put = |name: &str, v: Variant<'_>| {
            if let Ok(v) = zbus::OwnedVariant::try_from(v) {
                all.insert(name.to_owned(), v);
            }
        };
        put("Umid", Variant::from(self.umid.clone()));
        put("Pid", Variant::from(p.pid));
        put("State", Variant::from(p.state.as_str()));
        put("KernelVersion", Variant::from(p.kernel_version));
        put("CommandLine", Variant::from(p.command_line));
        put("Consoles", Variant::from(p.consoles));
        put("Disks", Variant::from(p.disks));
        put("MemoryBytes", Variant::from(p.memory_bytes));
        put("BootTime", Variant::from(p.boot_time));
        put("UserspaceUp", Variant::from(p.userspace_up));
        put("ExitStatus", Variant::from(p.exit_status));
        put("BootLog", Variant::from(p.boot_log));
        all
    }

    /// Whether the guest's userspace runs ([`uml::instance::userspace_started`]).
    pub(crate) async fn userspace_running(&self) -> bool {
        let pid = self.pid();
        pid != 0
            && tokio::task::spawn_blocking(move || uml::instance::userspace_started(pid))
                .await
                .unwrap_or(false)
    }

    /// Sets UserspaceUp, with PropertiesChanged; true when it changed.
    pub(crate) async fn set_userspace_up(&self, up: bool) -> bool {
        let changed = self.swap(|p| &mut p.userspace_up, up);
        if changed {
            self.emit_changed("UserspaceUp", Variant::from(up)).await;
        }
        changed
    }

    /// Claims the periodic device refresh; false when one is still under way.
    pub(crate) fn begin_refresh(&self) -> bool {
        !self.refreshing.swap(true, Ordering::SeqCst)
    }

    pub(crate) fn end_refresh(&self) {
        self.refreshing.store(false, Ordering::SeqCst);
    }

    /// Records the mconsole socket as it is now; the identity recorded before. `None` (and
    /// nothing recorded) while the socket does not exist.
    pub(crate) fn note_socket(&self) -> Option<(Option<SocketIdentity>, SocketIdentity)> {
        let now = SocketIdentity::of(&self.mconsole)?;
        let mut slot = self
            .socket
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let before = slot.replace(now);
        Some((before, now))
    }

    /// Forgets the mconsole client: a rebooted kernel (re-exec, same pid) binds a new socket.
    pub(crate) async fn reset_client(&self) {
        *self.client.lock().await = None;
    }

    /// The machine as [`uml::instance`] sees it.
    pub(crate) fn instance(&self) -> uml::instance::Instance {
        uml::instance::Instance {
            umid: self.umid.clone(),
            dir: self
                .mconsole
                .parent()
                .map(PathBuf::from)
                .unwrap_or_default(),
            pid: Some(self.pid()),
            liveness: uml::instance::Liveness::Running,
        }
    }

    /// Looks at the kernel (not at what this service last did) and sets State to running or
    /// paused: guests are paused and resumed by anyone (`uml pause`, uml_mconsole), and a
    /// restarted service must not guess. Only from running or paused; a sample that a Pause or
    /// Resume of this service overtook is dropped.
    pub(crate) async fn sync_run_state(&self) {
        if !matches!(self.state(), State::Running | State::Paused) {
            return;
        }
        let epoch = self.epoch.load(Ordering::SeqCst);
        let refreshing = self.refreshing.load(Ordering::SeqCst);
        let instance = self.instance();
        let Ok(Some(paused)) =
            tokio::task::spawn_blocking(move || uml::instance::paused_now(&instance)).await
        else {
            return;
        };
        // While this service reads the devices, a paused kernel spends its time answering
        // (not blocked in the stop loop's recvfrom): "running" then proves nothing. "Paused"
        // always does, and is what a refresh shows when the pause caught one of its requests
        // queued: the kernel answers that one only after `go`, and the refresh waits for it.
        if (refreshing || self.refreshing.load(Ordering::SeqCst)) && !paused {
            return;
        }
        if self.epoch.load(Ordering::SeqCst) != epoch {
            return;
        }
        let (from, to) = if paused {
            (State::Running, State::Paused)
        } else {
            (State::Paused, State::Running)
        };
        if self.transition(from, to).await {
            tracing::info!(umid = %self.umid, state = to.as_str(), "the guest's run state changed outside this service");
        }
    }

    pub(crate) fn mconsole_error(&self, e: uml::mconsole::Error) -> Error {
        Error::from_mconsole(&self.umid, self.timeout, e)
    }

    fn require_live(&self) -> Result<(), Error> {
        match self.state() {
            State::Starting => Err(Error::NotRunning(format!(
                "machine \"{}\" is still starting; wait for its Booted signal",
                self.umid
            ))),
            State::Exited | State::Crashed => Err(Error::NotRunning(format!(
                "machine \"{}\" is {}; it no longer answers",
                self.umid,
                self.state().as_str()
            ))),
            _ => Ok(()),
        }
    }

    /// Re-reads what the guest reports (version, memory, consoles, disks) and emits
    /// `PropertiesChanged` for what changed. Failures leave the old values.
    pub(crate) async fn refresh(&self) {
        let Ok(client) = self.client().await else {
            return;
        };
        if let Ok(text) = client.version().await {
            let release = uml::replies::kernel_release(&text)
                .unwrap_or_default()
                .to_owned();
            if self.swap(|p| &mut p.kernel_version, release.clone()) {
                self.emit_changed("KernelVersion", Variant::from(release))
                    .await;
            }
        }
        if let Ok(text) = client.proc_file("meminfo").await
            && let Some(bytes) = uml::replies::mem_total_bytes(&text)
            && self.swap(|p| &mut p.memory_bytes, bytes)
        {
            self.emit_changed("MemoryBytes", Variant::from(bytes)).await;
        }
        self.refresh_devices(&client).await;
    }

    /// Re-reads the consoles and disks.
    pub(crate) async fn refresh_devices(&self, client: &AsyncClient) {
        let named = named_lines(&self.props().command_line);
        let mut consoles = BTreeMap::new();
        for kind in ["con", "ssl"] {
            // Lines past the last one answer with an error (line_get_config, line.c).
            for n in 0..64 {
                let dev = format!("{kind}{n}");
                match client.config_get(&dev).await {
                    Ok(text) => {
                        // A line on no channel is not a console anyone set up (con=null is
                        // the default of every line past con0), unless it was named.
                        if uml::replies::line_configured(&text) || named.contains(&dev) {
                            consoles.insert(dev, text.trim().to_owned());
                        }
                    }
                    Err(_) => break,
                }
            }
        }
        let read_only = self.props().read_only.clone();
        let mut disks = BTreeMap::new();
        // MAX_DEV is 16 (ubd_kern.c); an unused unit answers with an empty text.
        for n in 0..16 {
            let dev = format!("ubd{n}");
            let Ok(text) = client.config_get(&dev).await else {
                break;
            };
            let Some(files) = uml::ubd::parse_config(&text) else {
                continue;
            };
            let ro = read_only.get(&dev).copied().unwrap_or(false);
            let backing = files
                .backing
                .map(|b| b.display().to_string())
                .unwrap_or_default();
            disks.insert(dev, (files.file.display().to_string(), backing, ro));
        }
        if self.swap(|p| &mut p.consoles, consoles.clone()) {
            self.emit_changed("Consoles", Variant::from(consoles)).await;
        }
        if self.swap(|p| &mut p.disks, disks.clone()) {
            self.emit_changed("Disks", Variant::from(disks)).await;
        }
    }

    /// Stores `value` in the field `f` picks; true when it differs from the old value.
    fn swap<T: PartialEq>(&self, f: impl FnOnce(&mut Props) -> &mut T, value: T) -> bool {
        let mut p = self.props();
        let slot = f(&mut p);
        if *slot == value {
            false
        } else {
            *slot = value;
            true
        }
    }
}

/// The unit a ubd word sets up (`ubd1r=/x`, `ubd010=/x` is unit 8, `ubdbr=/x` is unit 1), as
/// its device name (`ubd8`), and whether it is read-only, read by the library's option model
/// (`parse_unit` in ubd_kern.c). The guest does not report the flags (`ubd_get_config` prints
/// only the files), and it opens the file only while the block device is open, so the flags
/// are taken from the words that set the disk up: the command line and `Config` calls.
pub(crate) fn ubd_unit(word: &str) -> Option<(String, bool)> {
    match uml::cmdline::Arg::parse(word).meaning() {
        uml::cmdline::Arg::Ubd { unit, flags, .. } => Some((format!("ubd{unit}"), flags.read_only)),
        _ => None,
    }
}

/// The lines a command line names one by one (`con1=pts`, `ssl0=fd:3`; `con01=` is con1, as
/// the kernel reads it), by the library's option model.
pub(crate) fn named_lines(argv: &[String]) -> std::collections::BTreeSet<String> {
    use uml::cmdline::Arg;
    argv.iter()
        .filter_map(|w| match Arg::parse(w).meaning() {
            Arg::Con { unit: Some(n), .. } => Some(format!("con{n}")),
            Arg::Ssl { unit: Some(n), .. } => Some(format!("ssl{n}")),
            _ => None,
        })
        .collect()
}

/// Whether `line` names one console line the kernel has (`con1`, `ssl0`).
pub(crate) fn is_line(line: &str) -> bool {
    named_lines(&[format!("{line}=null")]).contains(line)
}

/// The read-only ubd units a command line sets up.
pub(crate) fn read_only_units(argv: &[String]) -> BTreeMap<String, bool> {
    argv.iter().filter_map(|w| ubd_unit(w)).collect()
}

/// Which file a socket path names: its device, inode and change time (an inode number alone
/// may be reused by the next file created).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SocketIdentity {
    dev: u64,
    ino: u64,
    ctime_ns: i128,
}

impl SocketIdentity {
    pub(crate) fn of(path: &std::path::Path) -> Option<SocketIdentity> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::symlink_metadata(path).ok()?;
        Some(SocketIdentity {
            dev: m.dev(),
            ino: m.ino(),
            ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
        })
    }
}

/// The interface name of machine objects.
pub const MACHINE_INTERFACE: &str = "org.umlkit.uml1.Machine";

/// The D-Bus face of one machine.
#[derive(Debug)]
pub(crate) struct MachineIface {
    pub data: Arc<MachineData>,
    pub access: Arc<crate::access::Access>,
}

/// One UML guest: its identity, state and devices, every mconsole operation, and the events
/// of its life.
#[interface(name = "org.umlkit.uml1.Machine")]
impl MachineIface {
    /// The instance's unique id (its directory name in the uml_dir).
    #[zbus(property(emits_changed_signal = "const"))]
    fn umid(&self) -> String {
        self.data.umid.clone()
    }

    /// The host pid of the kernel's main process (also its process group).
    #[zbus(property)]
    fn pid(&self) -> u32 {
        self.data.pid()
    }

    /// starting, running, paused, stopping, exited or crashed.
    #[zbus(property)]
    fn state(&self) -> String {
        self.data.state().as_str().to_owned()
    }

    /// The guest kernel's release, such as 6.1.176 (empty until it booted).
    #[zbus(property)]
    fn kernel_version(&self) -> String {
        self.data.props().kernel_version.clone()
    }

    /// The kernel's argv, from /proc/PID/cmdline.
    #[zbus(property)]
    fn command_line(&self) -> Vec<String> {
        self.data.props().command_line.clone()
    }

    /// Console lines (conN, sslN) and their channel as the guest reports it (fd:0,fd:1,
    /// pts:/dev/pts/3, ...): the lines on a channel, and those the command line names; kept
    /// current (read again every few seconds). OpenConsole opens a pty line.
    #[zbus(property)]
    fn consoles(&self) -> BTreeMap<String, String> {
        self.data.props().consoles.clone()
    }

    /// Block devices: ubdN to (file, backing file or empty, read-only).
    #[zbus(property)]
    fn disks(&self) -> BTreeMap<String, Disk> {
        self.data.props().disks.clone()
    }

    /// The guest's memory (MemTotal of its /proc/meminfo) in bytes; 0 until it booted.
    #[zbus(property)]
    fn memory_bytes(&self) -> u64 {
        self.data.props().memory_bytes
    }

    /// When the kernel process started, in microseconds since the Unix epoch.
    #[zbus(property)]
    fn boot_time(&self) -> u64 {
        self.data.props().boot_time
    }

    /// The file the kernel's output goes to (its boot messages and console), for machines
    /// this service launched, or `uml run --detach` started; empty when unknown.
    #[zbus(property)]
    fn boot_log(&self) -> String {
        self.data.props().boot_log.clone()
    }

    /// The guest's userspace started: its pid 1 runs a program (see the Booted signal).
    #[zbus(property)]
    fn userspace_up(&self) -> bool {
        self.data.props().userspace_up
    }

    /// The kernel's exit status once State is exited or crashed (as in the Exited signal);
    /// -1 before, or when unknown. An exited machine stays listed for the time umld
    /// --keep-exited gives (60 s by default), then MachineRemoved.
    #[zbus(property)]
    fn exit_status(&self) -> i32 {
        self.data.props().exit_status
    }

    /// Stops the guest gently: ctrl-alt-del and up to timeout_s seconds, then halt, then
    /// SIGTERM, then SIGKILL of its process group. Returns at once with State stopping; the
    /// Exited signal (and State exited) tells when it is gone. A guest whose init ignores
    /// ctrl-alt-del reboots instead: Rebooted("shutdown") says so and it is halted at once.
    async fn shutdown(
        &self,
        #[zbus(header)] header: Header<'_>,
        timeout_s: u32,
    ) -> Result<(), Error> {
        self.access
            .check_machine(&header, Action::Manage, self.data.owner)
            .await?;
        self.data.require_live()?;
        if self.data.state() == State::Stopping {
            return Ok(());
        }
        let instance = self.data.instance();
        self.data.set_state(State::Stopping).await;
        let grace = Duration::from_secs(u64::from(timeout_s));
        let data = self.data.clone();
        tokio::spawn(async move {
            let result =
                tokio::task::spawn_blocking(move || uml::instance::shutdown(&instance, grace))
                    .await;
            match result {
                Ok(Ok(step)) => tracing::info!(umid = %data.umid, ?step, "machine shut down"),
                Ok(Err(e)) => tracing::warn!(umid = %data.umid, "shutdown failed: {e}"),
                Err(e) => tracing::warn!(umid = %data.umid, "shutdown task failed: {e}"),
            }
        });
        Ok(())
    }

    /// Powers the guest off at once (mconsole halt), without a clean shutdown of userspace.
    async fn halt(&self, #[zbus(header)] header: Header<'_>) -> Result<(), Error> {
        self.access
            .check_machine(&header, Action::Manage, self.data.owner)
            .await?;
        self.data.require_live()?;
        let c = self.data.client().await?;
        let _ = c.go().await;
        self.data.set_state(State::Stopping).await;
        c.halt().await.map_err(|e| self.data.mconsole_error(e))
    }

    /// Reboots gracefully: sends ctrl-alt-del to the guest's init; returns at once. Rebooted
    /// ("reboot") follows when the kernel comes back, for every guest (launched here or not).
    async fn reboot(&self, #[zbus(header)] header: Header<'_>) -> Result<(), Error> {
        self.access
            .check_machine(&header, Action::Manage, self.data.owner)
            .await?;
        self.data.require_live()?;
        let c = self.data.client().await?;
        c.cad().await.map_err(|e| self.data.mconsole_error(e))
    }

    /// Reboots at once (mconsole reboot), like a reset button.
    async fn reset(&self, #[zbus(header)] header: Header<'_>) -> Result<(), Error> {
        self.access
            .check_machine(&header, Action::Manage, self.data.owner)
            .await?;
        self.data.require_live()?;
        let c = self.data.client().await?;
        c.reboot().await.map_err(|e| self.data.mconsole_error(e))
    }

    /// Stops the guest's CPU (mconsole stop); it still answers mconsole calls. Pausing a
    /// paused machine succeeds and changes nothing.
    async fn pause(&self, #[zbus(header)] header: Header<'_>) -> Result<(), Error> {
        self.access
            .check_machine(&header, Action::Manage, self.data.owner)
            .await?;
        self.data.require_live()?;
        self.data.epoch.fetch_add(1, Ordering::SeqCst);
        let c = self.data.client().await?;
        match c.stop().await {
            Ok(()) => {}
            // Paused by someone else since State was last synced: the same outcome.
            Err(uml::mconsole::Error::Guest { message, .. })
                if message.contains("Already stopped") => {}
            Err(e) => return Err(self.data.mconsole_error(e)),
        }
        self.data.epoch.fetch_add(1, Ordering::SeqCst);
        self.data.transition(State::Running, State::Paused).await;
        Ok(())
    }

    /// Continues a paused guest (mconsole go). Resuming a running machine succeeds and changes
    /// nothing; one that is starting, stopping or gone fails with NotRunning.
    async fn resume(&self, #[zbus(header)] header: Header<'_>) -> Result<(), Error> {
        self.access
            .check_machine(&header, Action::Manage, self.data.owner)
            .await?;
        self.data.require_live()?;
        if self.data.state() == State::Stopping {
            return Err(Error::NotRunning(format!(
                "machine \"{}\" is stopping",
                self.data.umid
            )));
        }
        self.data.epoch.fetch_add(1, Ordering::SeqCst);
        let c = self.data.client().await?;
        match c.go().await {
            Ok(()) => {}
            // A running guest answers go with "Not stopped" (mconsole_go): nothing to do.
            Err(uml::mconsole::Error::Guest { message, .. }) if message.contains("Not stopped") => {
            }
            Err(e) => return Err(self.data.mconsole_error(e)),
        }
        self.data.epoch.fetch_add(1, Ordering::SeqCst);
        self.data.transition(State::Paused, State::Running).await;
        Ok(())
    }

    /// Sends a magic SysRq key (one printable character) and returns what the kernel printed.
    #[zbus(out_args("output"))]
    async fn sys_rq(&self, #[zbus(header)] header: Header<'_>, key: &str) -> Result<String, Error> {
        self.access
            .check_machine(&header, Action::Manage, self.data.owner)
            .await?;
        self.data.require_live()?;
        let mut chars = key.chars();
        let (Some(k), None) = (chars.next(), chars.next()) else {
            return Err(Error::InvalidArgument(format!(
                "{key:?} is not a SysRq key; pass exactly one printable character, such as m or t"
            )));
        };
        let c = self.data.client().await?;
        c.sysrq(k).await.map_err(|e| self.data.mconsole_error(e))
    }

    /// Adds or changes a device at run time: Config("ubd1", "/path/disk.img").
    async fn config(
        &self,
        #[zbus(header)] header: Header<'_>,
        device: &str,
        spec: &str,
    ) -> Result<(), Error> {
        let caller = self
            .access
            .check_machine(&header, Action::Manage, self.data.owner)
            .await?;
        // A guest that runs as the caller opens the files with its rights anyway.
        let spec = &if self.data.owner == Some(caller.uid) {
            spec.to_owned()
        } else {
            crate::access::vet_config(&caller, device, spec).await?
        };
        self.data.require_live()?;
        let c = self.data.client().await?;
        c.config_set(device, spec)
            .await
            .map_err(|e| self.data.mconsole_error(e))?;
        if let Some((unit, ro)) = ubd_unit(&format!("{device}={spec}")) {
            self.data.props().read_only.insert(unit, ro);
        }
        self.data.refresh_devices(&c).await;
        Ok(())
    }

    /// A descriptor of the host pty behind a console line (conN or sslN), opened read-write:
    /// what a terminal reads and writes to talk to the guest on that line. The line must be on
    /// a pty channel the guest has opened (Consoles shows pts:/dev/pts/N): set one up with
    /// con1=pts at launch or Config("con1", "pts"), then have the guest open the line (a
    /// getty on tty1).
    #[zbus(out_args("fd"))]
    async fn open_console(
        &self,
        #[zbus(header)] header: Header<'_>,
        line: &str,
    ) -> Result<zbus::OwnedFd, Error> {
        self.access
            .check_machine(&header, Action::Manage, self.data.owner)
            .await?;
        self.data.require_live()?;
        if !is_line(line) {
            return Err(Error::InvalidArgument(format!(
                "{line:?} is not a console line; pass conN or sslN, such as con1"
            )));
        }
        let c = self.data.client().await?;
        let text = c
            .config_get(line)
            .await
            .map_err(|e| self.data.mconsole_error(e))?;
        let text = text.trim();
        let Some(pty) = uml::replies::line_pty(text) else {
            let hint = if text == "pts" || text == "pty" {
                "the guest has not opened it yet (start a getty on it)".to_owned()
            } else {
                format!(
                    "Config(\"{line}\", \"pts\") puts it on one, which the guest allocates when it opens the line"
                )
            };
            return Err(Error::InvalidArgument(format!(
                "machine \"{}\": line {line} is on {text:?}, not on a host pty; {hint}",
                self.data.umid
            )));
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(pty)
            .map_err(|e| Error::Failed(format!("cannot open {pty} ({line}): {e}")))?;
        Ok(zbus::OwnedFd::from(std::os::fd::OwnedFd::from(file)))
    }

    /// The configuration of a device, as the guest reports it.
    #[zbus(out_args("spec"))]
    async fn query_config(&self, device: &str) -> Result<String, Error> {
        self.data.require_live()?;
        let c = self.data.client().await?;
        c.config_get(device)
            .await
            .map_err(|e| self.data.mconsole_error(e))
    }

    /// Removes a device (hot-unplug), such as ubd1.
    async fn remove(&self, #[zbus(header)] header: Header<'_>, device: &str) -> Result<(), Error> {
        self.access
            .check_machine(&header, Action::Manage, self.data.owner)
            .await?;
        self.data.require_live()?;
        let c = self.data.client().await?;
        c.remove(device)
            .await
            .map_err(|e| self.data.mconsole_error(e))?;
        if let Some((unit, _)) = ubd_unit(&format!("{device}=")) {
            self.data.props().read_only.remove(&unit);
        }
        self.data.refresh_devices(&c).await;
        Ok(())
    }

    /// A file of the guest's /proc, such as meminfo or uptime.
    #[zbus(out_args("text"))]
    async fn proc(&self, #[zbus(header)] header: Header<'_>, path: &str) -> Result<String, Error> {
        self.access
            .check_machine(&header, Action::Inspect, self.data.owner)
            .await?;
        self.data.require_live()?;
        let c = self.data.client().await?;
        c.proc_file(path)
            .await
            .map_err(|e| self.data.mconsole_error(e))
    }

    /// Writes text to the guest's kernel log.
    async fn log(&self, #[zbus(header)] header: Header<'_>, text: &str) -> Result<(), Error> {
        self.access
            .check_machine(&header, Action::Manage, self.data.owner)
            .await?;
        self.data.require_live()?;
        let c = self.data.client().await?;
        c.log(text).await.map_err(|e| self.data.mconsole_error(e))
    }

    /// The kernel stack of a guest process.
    #[zbus(out_args("stack"))]
    async fn stack(&self, #[zbus(header)] header: Header<'_>, pid: u32) -> Result<String, Error> {
        self.access
            .check_machine(&header, Action::Inspect, self.data.owner)
            .await?;
        self.data.require_live()?;
        let c = self.data.client().await?;
        c.stack(pid).await.map_err(|e| self.data.mconsole_error(e))
    }

    /// The guest kernel's full version string (mconsole version).
    #[zbus(out_args("version"))]
    async fn version(&self) -> Result<String, Error> {
        self.data.require_live()?;
        let c = self.data.client().await?;
        c.version().await.map_err(|e| self.data.mconsole_error(e))
    }

    /// The guest's mconsole came up: it answers calls from now on (State running). Userspace
    /// may not run yet; Booted follows when it does.
    #[zbus(signal)]
    pub(crate) async fn mconsole_ready(emitter: &SignalEmitter<'_>) -> zbus::Result<()>;

    /// The guest booted: its userspace started (pid 1 executed its init program and still
    /// runs a moment later; a guest whose init dies at once panics instead). UserspaceUp
    /// becomes true.
    #[zbus(signal)]
    pub(crate) async fn booted(emitter: &SignalEmitter<'_>) -> zbus::Result<()>;

    /// The kernel restarted (same pid, a fresh boot): reason is "shutdown" when it rebooted
    /// during a Shutdown (its init ignored ctrl-alt-del; it is then halted), else "reboot".
    #[zbus(signal)]
    pub(crate) async fn rebooted(emitter: &SignalEmitter<'_>, reason: &str) -> zbus::Result<()>;

    /// The guest kernel panicked, with the panic message; State becomes crashed.
    #[zbus(signal)]
    pub(crate) async fn panicked(emitter: &SignalEmitter<'_>, message: &str) -> zbus::Result<()>;

    /// The guest's watchdog (uml_watchdog) reported that it stopped being pinged.
    #[zbus(signal)]
    pub(crate) async fn hung(emitter: &SignalEmitter<'_>) -> zbus::Result<()>;

    /// The guest wrote this text to /proc/mconsole.
    #[zbus(signal)]
    pub(crate) async fn notified(emitter: &SignalEmitter<'_>, message: &str) -> zbus::Result<()>;

    /// The kernel process ended: its exit status, 128 + signal number when a signal ended it,
    /// or -1 when the service did not start it and cannot know.
    #[zbus(signal)]
    pub(crate) async fn exited(emitter: &SignalEmitter<'_>, status: i32) -> zbus::Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ubd_words_give_the_unit_the_kernel_reads_and_read_only() {
        assert_eq!(ubd_unit("ubd1r=/x"), Some(("ubd1".into(), true)));
        assert_eq!(ubd_unit("ubd12=/x"), Some(("ubd12".into(), false)));
        assert_eq!(ubd_unit("ubd2c=/x"), Some(("ubd2".into(), false)));
        // Regressions: parse_unit() reads a base-0 number (010 is 8) or a letter (b is 1).
        assert_eq!(ubd_unit("ubd010r=/x"), Some(("ubd8".into(), true)));
        assert_eq!(ubd_unit("ubdbr=/x"), Some(("ubd1".into(), true)));
        assert_eq!(ubd_unit("ubd=sync"), None);
        assert_eq!(ubd_unit("ubdx=/x"), None);
        assert_eq!(ubd_unit("ubd16=/x"), None);
        assert_eq!(ubd_unit("mem=64M"), None);
        let ro = read_only_units(&[
            "ubd0r=/a".into(),
            "ubd1=/b".into(),
            "ubd010r=/c".into(),
            "ubdcr=/d".into(),
        ]);
        assert_eq!(ro.get("ubd0"), Some(&true));
        assert_eq!(ro.get("ubd1"), Some(&false));
        assert_eq!(ro.get("ubd8"), Some(&true));
        assert_eq!(ro.get("ubd2"), Some(&true));
        assert_eq!(ro.get("ubd010"), None);
    }

    #[test]
    fn lines_are_named_as_the_kernel_reads_them() {
        let named = named_lines(&[
            "con=null".into(),
            "con1=pts".into(),
            "ssl0=fd:3".into(),
            "con01=null".into(),
            "con99=pts".into(),
            "mem=64M".into(),
        ]);
        assert_eq!(
            named.into_iter().collect::<Vec<_>>(),
            ["con1".to_owned(), "ssl0".to_owned()]
        );
        assert!(is_line("con0") && is_line("ssl3"));
        assert!(!is_line("con") && !is_line("con99") && !is_line("ubd0") && !is_line("con1x"));
    }
}
