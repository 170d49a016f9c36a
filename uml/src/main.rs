//! The `uml` command: parses arguments, calls the `uml` library, maps errors to exit codes.

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

fn main() -> ExitCode {
    // The built-in guest's init (`#!/path/to/uml __guest-init` in the file the kernel runs as
    // init): before clap, which a guest's pid 1 has no use for.
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
    if version != "version"
        || umid.is_empty()
        || umid.starts_with(['-', '.'])
        || umid.contains('/')
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
