//! `uml-init`: the guest init of `uml run` and umld, and nothing else.
//!
//! A guest started by `uml run` boots with a config file as its init; the config's `#!` line
//! names this binary ([`uml::guest_init::program`]), which serves it
//! ([`uml::guest_init::serve_if_asked`]). It does what `uml __guest-init CONFIG` does, in a
//! binary a tenth of `uml`'s size: the guest pages in less code, through hostfs, one 4 KiB
//! page fault at a time.

#![cfg_attr(not(test), no_main)]

// The unwinder from libgcc_eh.a, as in `uml`: loading libgcc_s.so would run CPUID
// instructions, each of which leaves a virtual machine, at every start.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[link(name = "gcc_eh", kind = "static", modifiers = "+whole-archive,-bundle")]
unsafe extern "C" {}

/// The entry point, called by the C library, as in `uml` (without Rust's runtime start): SIGPIPE
/// ignored (the command's child sets it back), then the init. Run by hand, it says what it is.
#[cfg(not(test))]
#[unsafe(no_mangle)]
extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    // SAFETY: no other thread exists yet; SIG_IGN is a valid disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    uml::guest_init::serve_if_asked();
    eprintln!(
        "uml-init: the init of guests that `uml run` and umld start; the kernel runs it as a \
         guest's pid 1 through the config file `uml run` writes, never by hand"
    );
    2
}

#[cfg(test)]
fn main() {}
