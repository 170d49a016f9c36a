//! `org.umlkit.uml1.Manager` at `/org/umlkit/uml1`: the list of machines and launching new
//! ones. The `org.freedesktop.DBus.ObjectManager` beside it
//! lists the machine objects only: zbus's own also lists the bare node between them
//! (`/org/umlkit/uml1/machine`), which has no interface.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use zbus::message::Header;
use zbus::names::{InterfaceName, OwnedInterfaceName};
use zbus::object_server::SignalEmitter;
use zbus::{ObjectPath, OwnedObjectPath, OwnedVariant, Variant, interface};

use crate::access::Action;
use crate::error::Error;
use crate::service::Service;

/// The D-Bus face of the service.
#[derive(Debug)]
pub(crate) struct Manager {
    pub service: Arc<Service>,
}

/// The UML guests of one uml_dir: list them, find one, launch one.
#[interface(name = "org.umlkit.uml1.Manager")]
impl Manager {
    /// Every known machine: umid, state, kernel version and object path, sorted by umid.
    #[zbus(out_args("machines"))]
    fn list_machines(&self) -> Vec<(String, String, String, OwnedObjectPath)> {
        self.service
            .machines()
            .into_iter()
            .map(|m| {
                let p = m.props();
                (
                    m.umid.clone(),
                    p.state.as_str().to_owned(),
                    p.kernel_version.clone(),
                    m.path.clone(),
                )
            })
            .collect()
    }

    /// The object path of the machine umid; NoSuchMachine names the known ones.
    #[zbus(out_args("path"))]
    fn get_machine(&self, umid: &str) -> Result<OwnedObjectPath, Error> {
        self.service.get(umid).map(|m| m.path.clone())
    }

    /// Starts a guest and returns at once with it in state starting (MconsoleReady, then
    /// Booted follow). Options, as `uml run` names them: "mem" (s, default 256M), "disks" (as:
    /// FILE, FILE:ro, COW:BASE or COW:BASE:ro, absolute paths), "root" (s: a disk image, FILE
    /// or COW:BASE, booted as / with its own init, as `uml run --root`; then no command,
    /// shell or rw), "rw" (as: host directories
    /// writable in the guest), "net" (as: uml run's --net specs, e.g. switch:NAME, tap:DEV,
    /// l2tpv3:LOCAL:REMOTE, each with an optional ,ip=ADDR/PREFIX; the Nth is ethN in the
    /// guest), "command" (as: run this and power
    /// off) or "shell" (b, the
    /// default: a login shell on con0, a host pty for OpenConsole), "umid" (s), "kernel" (s).
    /// Expert: "kernel_args" (as) is the whole kernel command line instead (checked by
    /// umlkit's option model; errors name the bad word). Refusals are InvalidArgument, and
    /// nothing is started. The machine's BootLog property names its log file.
    #[zbus(out_args("path"))]
    async fn launch(
        &self,
        #[zbus(header)] header: Header<'_>,
        options: HashMap<String, OwnedVariant>,
    ) -> Result<OwnedObjectPath, Error> {
        let caller = self.service.access.check(&header, Action::Launch).await?;
        let options = crate::access::vet_launch(&caller, options).await?;
        self.service.launch(&caller, options).await
    }

    /// The uml_dir this service watches.
    #[zbus(property(emits_changed_signal = "const"))]
    fn uml_dir(&self) -> String {
        self.service.uml_dir.display().to_string()
    }

    /// The service's version.
    #[zbus(property(emits_changed_signal = "const"))]
    fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").to_owned()
    }

    /// A machine appeared (launched here or found in the uml_dir).
    #[zbus(signal)]
    async fn machine_new(
        emitter: &SignalEmitter<'_>,
        umid: &str,
        path: ObjectPath<'_>,
    ) -> zbus::Result<()>;

    /// A machine's kernel is gone and its object was removed.
    #[zbus(signal)]
    async fn machine_removed(
        emitter: &SignalEmitter<'_>,
        umid: &str,
        path: ObjectPath<'_>,
    ) -> zbus::Result<()>;
}

/// `org.freedesktop.DBus.ObjectManager` at the manager's path: every machine object with its
/// interfaces, and nothing else. zbus emits InterfacesAdded and InterfacesRemoved for it (it
/// recognises the interface by name).
#[derive(Debug)]
pub(crate) struct Objects {
    pub service: Arc<Service>,
}

#[interface(name = "org.freedesktop.DBus.ObjectManager")]
impl Objects {
    #[zbus(out_args("object_paths_interfaces_and_properties"))]
    fn get_managed_objects(
        &self,
    ) -> HashMap<OwnedObjectPath, HashMap<OwnedInterfaceName, HashMap<String, OwnedVariant>>> {
        self.service
            .machines()
            .into_iter()
            .map(|m| {
                let iface = OwnedInterfaceName::from(InterfaceName::from_static_str_unchecked(
                    crate::machine::MACHINE_INTERFACE,
                ));
                (m.path.clone(), HashMap::from([(iface, m.all_properties())]))
            })
            .collect()
    }

    #[zbus(signal)]
    async fn interfaces_added(
        emitter: &SignalEmitter<'_>,
        object_path: ObjectPath<'_>,
        interfaces_and_properties: HashMap<InterfaceName<'_>, HashMap<&str, Variant<'_>>>,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    async fn interfaces_removed(
        emitter: &SignalEmitter<'_>,
        object_path: ObjectPath<'_>,
        interfaces: Cow<'_, [InterfaceName<'_>]>,
    ) -> zbus::Result<()>;
}
