//! `uml`: User-mode Linux from the host.
//!
//! One typed model of the UML kernel's command line ([`options`], [`cmdline`]), the mconsole
//! protocol ([`mconsole`]), instance discovery in `uml_dir` ([`instance`]), launching and
//! supervising a kernel ([`launch`]), COW disk files ([`cow`]) and a switch for the `daemon`
//! network transport ([`switch`]). Every other part of umlkit (the `uml` binary, `umlfs`,
//! `umld`) stands on this crate and never reads a UML socket or file format itself.

mod bytes;
pub mod check;
pub mod cmdline;
pub mod cow;
pub mod doctor;
pub mod guest_init;
pub mod image;
pub mod instance;
pub mod kernel;
pub mod launch;
pub mod mconsole;
pub mod net;
pub mod notify_socket;
pub mod options;
pub mod pidfd;
pub mod procfs;
pub mod replies;
pub mod switch;
pub mod text;
pub mod ubd;
