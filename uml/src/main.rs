//! The `uml` command: parses arguments, calls the `uml` library, maps errors to exit codes.
//!
//! It starts at a C `main` of its own instead of Rust's runtime start: see [`main`].

// The test harness brings its own main.
#![cfg_attr(not(test), no_main)]

mod cmd;

// The unwinder (panics, backtraces) from libgcc_eh.a, linked in whole, so that libgcc_s.so is
// not needed: loading it ran its constructor, `__cpu_indicator_init`, whose CPUID instructions
// each leave a virtual machine, at every start. That was a sixth of `uml version`'s CPU time in
// a VM (0.2 ms: 1.15-1.25 ms against 0.97-1.03 ms, `perf stat -r 400`). It is what gcc's
// -static-libgcc does for C++ programs; catch_unwind and backtraces work as with the shared one.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[link(name = "gcc_eh", kind = "static", modifiers = "+whole-archive,-bundle")]
unsafe extern "C" {}

use std::process::ExitCode;

use clap::Parser;

/// The process's entry point, called by the C library, doing what Rust's runtime start (the
/// `fn main` wrapper) does that `uml` relies on, and no more: descriptors 0-2 open, SIGPIPE
/// ignored, a panic reported and turned into status 101, stdout flushed at the end. What it
/// leaves out is the main thread's stack-overflow message, whose setup reads and parses
/// /proc/self/maps (the overflow still stops the process, by SIGSEGV on the kernel's guard
/// gap), and the naming of the main thread. That start cost 0.1 ms of every `uml` process
/// (21 system calls; 1.10 against 0.99 ms for an empty program, `perf stat -r 500`), a tenth of
/// `uml version`, and more inside a guest, whose init this binary was (`uml-init`, which now is,
/// starts the same way).
#[cfg(not(test))]
#[unsafe(no_mangle)]
extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    standard_descriptors();
    // SAFETY: no other thread exists yet; SIG_IGN is a valid disposition. Rust's runtime start
    // does the same (commands that only report set it back, in `run`), and std::process
    // resets it to the default in the programs it starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    let code = std::panic::catch_unwind(run).unwrap_or(ExitCode::from(101));
    let _ = std::io::Write::flush(&mut std::io::stdout());
    // ExitCode keeps its number to itself; it was made from one of these.
    (0..=u8::MAX)
        .find(|&n| ExitCode::from(n) == code)
        .map_or(1, libc::c_int::from)
}

/// Descriptors 0, 1 and 2 that are not open are opened on /dev/null, as Rust's runtime start
/// does, so that a file or socket `uml` opens never becomes its standard output by accident.
#[cfg(not(test))]
fn standard_descriptors() {
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    // SAFETY: `fds` is a valid array of three pollfd for the duration of the call.
    let polled = unsafe { libc::poll(fds.as_mut_ptr(), 3, 0) };
    if polled < 0 {
        return;
    }
    for pollfd in fds {
        if pollfd.revents & libc::POLLNVAL != 0 {
            // SAFETY: a NUL-terminated path and valid flags; open(2) takes the lowest free
            // descriptor, which is this one, the lower ones being open already.
            let _ = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
        }
    }
}

/// Under the test harness, which brings its own entry point, the ordinary one.
#[cfg(test)]
fn main() -> ExitCode {
    run()
}

fn run() -> ExitCode {
    // The built-in guest's init when no `uml-init` is installed beside this binary
    // (`#!/path/to/uml __guest-init` in the file the kernel runs as init), or when one of
    // another build hands the config back: before clap, which a guest's pid 1 has no use for.
    uml::guest_init::serve_if_asked();
    if let Some(code) = fast_version() {
        return code;
    }
    let cli = cmd::Cli::parse();
    if cli.command.only_reports() {
        // A command that only prints ends quietly when its reader goes away (`uml list | head`),
        // as C tools do, instead of panicking on EPIPE in println!. Commands that act (run,
        // console, switch, shutdown, …) keep Rust's default of ignoring SIGPIPE, so that a closed
        // pipe never kills them halfway through.
        // SAFETY: called before any other thread exists; SIG_DFL is a valid disposition.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    cmd::init_tracing(cli.global.verbose);
    match cmd::dispatch(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("uml: {}", cmd::error_chain(&err));
            ExitCode::from(1)
        }
    }
}

/// `uml [--uml-dir DIR] version UMID`, the command scripts call in a loop, answered without
/// building clap's parser (about a third of this command's time as a process). Only that exact
/// form, and only when the guest answers: anything else, or any failure, goes the ordinary
/// way, which parses everything and explains errors.
fn fast_version() -> Option<ExitCode> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let (dir, rest) = match args.as_slice() {
        [flag, dir, rest @ ..] if flag == "--uml-dir" => {
            (Some(std::path::PathBuf::from(dir)), rest)
        }
        [flag, rest @ ..] if flag.as_encoded_bytes().starts_with(b"--uml-dir=") => (
            Some(std::path::PathBuf::from(std::ffi::OsStr::new(
                flag.to_str()?.strip_prefix("--uml-dir=")?,
            ))),
            rest,
        ),
        rest => (None, rest),
    };
    let [version, umid] = rest else { return None };
    let umid = umid.to_str()?;
    // An option (`version --help`) goes the ordinary way; the library judges the name.
    if version != "version"
        || umid.starts_with('-')
        || dir.as_ref().is_some_and(|d| d.as_os_str().is_empty())
    {
        return None;
    }
    let dir = match dir {
        Some(d) => d,
        None => match std::env::var_os("UML_DIR") {
            Some(d) if !d.is_empty() => d.into(),
            Some(_) => return None,
            None => uml::instance::uml_dir_or_default(None).ok()?,
        },
    };
    // Only a socket proven to be the instance's (not a symlink, its kernel's, bound by its
    // pid), as on the ordinary path.
    let client = uml::instance::quick_client(&dir, umid, std::time::Duration::from_secs(5))?;
    let reply = match client.version() {
        Ok(reply) => reply,
        // Connected, so the guest is there: its error (a timeout, a refusal) is the answer, as
        // the ordinary path would give it; asking again would only double the wait.
        Err(e) => {
            eprintln!("uml: {}", cmd::error_chain(&e.into()));
            return Some(ExitCode::from(1));
        }
    };
    // As for every command that only prints: a closed pipe ends it quietly.
    // SAFETY: no other thread exists yet; SIG_DFL is a valid disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    // Guest text: no escape sequences reach the terminal.
    let reply = uml::text::printable(&reply);
    let written = if reply.is_empty() {
        Ok(())
    } else if reply.ends_with('\n') {
        out.write_all(reply.as_bytes())
    } else {
        writeln!(out, "{reply}")
    };
    Some(if written.and_then(|()| out.flush()).is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
