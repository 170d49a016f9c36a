//! The named D-Bus errors of `org.umlkit.uml1`, each with a message a person can act on.

use std::time::Duration;

use uml::mconsole;

/// An error returned to a D-Bus caller, named `org.umlkit.uml1.Error.<Variant>`.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.umlkit.uml1.Error")]
pub enum Error {
    /// A zbus failure that is not the guest's fault.
    #[zbus(error)]
    ZBus(zbus::Error),
    /// No machine with that umid is known.
    NoSuchMachine(String),
    /// An argument was refused (a kernel argument, a device name, a SysRq key, an option).
    InvalidArgument(String),
    /// The guest did not answer its mconsole within the deadline.
    GuestNotResponding(String),
    /// The machine is not in a state that allows the call (starting, stopping, exited).
    NotRunning(String),
    /// The guest answered but refused the command.
    GuestRefused(String),
    /// The kernel could not be started.
    LaunchFailed(String),
    /// The caller may not do this: another user on a session bus, or not authorised by polkit
    /// on the system bus, or naming a host file it could not use itself.
    AccessDenied(String),
    /// Anything else.
    Failed(String),
}

/// A library error with its causes, `outer: cause: cause`.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    uml::text::with_causes(e)
}

impl Error {
    /// Maps an mconsole failure of machine `umid` to the error a caller can act on.
    pub(crate) fn from_mconsole(umid: &str, timeout: Duration, e: mconsole::Error) -> Error {
        match e {
            mconsole::Error::Timeout { command, .. } => Error::GuestNotResponding(format!(
                "machine \"{umid}\" did not answer {command:?} within {timeout:?}: it may be \
                 stopped (SIGSTOP), hung or overloaded; try again, or Shutdown it"
            )),
            mconsole::Error::Connect { .. } | mconsole::Error::Send { .. } => {
                Error::GuestNotResponding(format!("machine \"{umid}\": {}", chain(&e)))
            }
            mconsole::Error::Guest { .. } => {
                Error::GuestRefused(format!("machine \"{umid}\": {}", chain(&e)))
            }
            mconsole::Error::BadDevice { .. }
            | mconsole::Error::BadSysrqKey { .. }
            | mconsole::Error::CommandTooLong { .. } => Error::InvalidArgument(e.to_string()),
            other => Error::Failed(format!("machine \"{umid}\": {}", chain(&other))),
        }
    }
}
