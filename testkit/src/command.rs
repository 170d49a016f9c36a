//! Host commands run from tests: always with a deadline, and a failure shows the command, its
//! exit status, stdout and stderr.
//!
//! [`output_of`] is the one runner; [`run`], [`run_failing`], [`stdout_of`] and [`try_run`]
//! only say what outcome the test expects.

use std::io::Read;
use std::process::{Child, Command, Output, Stdio};
use std::thread::{JoinHandle, sleep};
use std::time::{Duration, Instant};

/// How long [`run`] and its siblings let a command take before the test fails. Test commands
/// (mke2fs, debugfs, busctl, `uml` subcommands that boot a guest) finish in seconds; this only
/// bounds a hang.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `cmd` with stdin from `/dev/null` and stdout and stderr captured, for at most `limit`;
/// a command still running then is killed and the test fails, naming it. The exit status is
/// the caller's to judge.
///
/// # Panics
/// When the command cannot be started or outlives `limit`.
pub fn output_of(cmd: &mut Command, limit: Duration) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    output_within(child, limit, &format!("{cmd:?}"))
}

/// Runs `cmd` (as [`output_of`], within [`RUN_TIMEOUT`]), which must succeed.
///
/// # Panics
/// When it fails, with its status, stdout and stderr.
pub fn run(cmd: &mut Command) -> Output {
    let out = output_of(cmd, RUN_TIMEOUT);
    assert!(
        out.status.success(),
        "{}",
        show_output(&format!("{cmd:?}"), &out)
    );
    out
}

/// [`run`], giving stdout as text.
pub fn stdout_of(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&run(cmd).stdout).into_owned()
}

/// Runs `cmd` (as [`output_of`], within [`RUN_TIMEOUT`]), which must fail.
///
/// # Panics
/// When it succeeds, with its stdout and stderr.
pub fn run_failing(cmd: &mut Command) -> Output {
    let out = output_of(cmd, RUN_TIMEOUT);
    assert!(
        !out.status.success(),
        "unexpected success: {}",
        show_output(&format!("{cmd:?}"), &out)
    );
    out
}

/// Runs `cmd` (as [`output_of`], within [`RUN_TIMEOUT`]) for a test that looks at a failure:
/// its stdout if it succeeds, otherwise the command, status, stdout and stderr.
pub fn try_run(cmd: &mut Command) -> Result<String, String> {
    let out = output_of(cmd, RUN_TIMEOUT);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(show_output(&format!("{cmd:?}"), &out))
    }
}

/// Waits for `child` at most `limit`, then collects its output; a child still running at the
/// limit is killed and the test fails, naming `what`. Piped stdout and stderr are read while
/// it runs, so a child that writes more than a pipe holds does not stall.
pub fn output_within(mut child: Child, limit: Duration, what: &str) -> Output {
    let stdout = child.stdout.take().map(drain);
    let stderr = child.stderr.take().map(drain);
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{what} did not finish within {limit:?}");
            }
            Ok(None) => sleep(Duration::from_millis(5)),
            Err(e) => panic!("waiting for {what}: {e}"),
        }
    };
    let collect = |reader: Option<JoinHandle<Vec<u8>>>| {
        let Some(reader) = reader else {
            return Vec::new();
        };
        // A process the child started may hold the pipe open after the child exits.
        let deadline = Instant::now() + PIPE_GRACE;
        while !reader.is_finished() {
            assert!(
                Instant::now() < deadline,
                "{what} exited ({status}), but a process it started keeps its stdout or stderr open"
            );
            sleep(Duration::from_millis(5));
        }
        reader.join().unwrap_or_default()
    };
    Output {
        status,
        stdout: collect(stdout),
        stderr: collect(stderr),
    }
}

/// How long after a child exits its output pipes may stay open.
const PIPE_GRACE: Duration = Duration::from_secs(10);

/// Reads a pipe to its end on a thread of its own.
fn drain<R: Read + Send + 'static>(mut pipe: R) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

/// A command's exit status, stdout and stderr, for a failed assertion's message.
pub fn show_output(what: &str, out: &Output) -> String {
    format!(
        "{what} exited {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_larger_than_a_pipe_is_collected_whole() {
        let out = output_of(
            Command::new("head").args(["-c", "1000000", "/dev/zero"]),
            Duration::from_secs(30),
        );
        assert!(out.status.success());
        assert_eq!(out.stdout.len(), 1_000_000);
    }

    #[test]
    fn a_command_past_its_deadline_fails_the_test_naming_it() {
        let started = Instant::now();
        let panic = std::panic::catch_unwind(|| {
            output_of(Command::new("sleep").arg("100"), Duration::from_millis(200))
        })
        .expect_err("sleep 100 outlived a 200 ms deadline");
        assert!(started.elapsed() < Duration::from_secs(20));
        let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(message.contains("\"sleep\" \"100\""), "{message}");
        assert!(message.contains("did not finish"), "{message}");
    }

    #[test]
    fn a_failure_shows_the_command_its_status_and_both_streams() {
        let err = try_run(Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]))
            .expect_err("exit 3 is a failure");
        for part in ["\"sh\"", "exited Some(3)", "out", "err"] {
            assert!(err.contains(part), "{part:?} missing from {err}");
        }
        assert_eq!(
            try_run(Command::new("echo").arg("hi")).as_deref(),
            Ok("hi\n")
        );
    }
}
