//! Known ways a kernel and a host do not go together, recognised in a boot log.
//!
//! The line that names the cause of a failed boot usually comes well before the panic and its
//! call trace, so a caller that shows only the last lines of the log hides it. [`diagnose`]
//! finds it and says what it means and what to do.

use super::Version;

/// One recognised incompatibility.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnosis {
    /// A short stable name (`xsave-size`).
    pub id: &'static str,
    /// The boot-log line that shows it, as the kernel printed it.
    pub line: String,
    /// What is wrong, in a sentence.
    pub cause: String,
    /// What to do about it.
    pub fix: String,
}

impl std::fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}\n  the kernel said: {}\n  fix: {}",
            self.cause, self.line, self.fix
        )
    }
}

/// A pattern of a known incompatibility: a substring of the line that shows it.
struct Known {
    id: &'static str,
    needle: &'static str,
    cause: fn(Option<Version>) -> String,
    fix: &'static str,
}

/// Verified on a host with AMX (Intel Xeon, host kernel 6.18): 6.1.176 and 6.12.113 fail this
/// way, 7.2.7 and 7.2.12 run. Those kernels hand the host a fixed-size XSAVE buffer through
/// `PTRACE_SETREGSET` (`NT_X86_XSTATE`); the host wants the full user XSAVE size, which AMX tile
/// data makes kilobytes larger, and answers EFAULT. 7.x asks the host for the size at boot
/// (`arch/x86/um/os-Linux/registers.c`).
const KNOWN: &[Known] = &[Known {
    id: "xsave-size",
    needle: "ptrace set fp regs failed",
    cause: |version| {
        let which = version.map_or_else(|| "this kernel".to_owned(), |v| format!("kernel {v}"));
        format!(
            "{which} cannot run a process on this host: the host CPU's XSAVE state (AMX tile \
             data) is larger than the buffer the kernel gives ptrace, so the guest's first \
             process is killed. Kernels before 7.0 fail this way (verified: 6.1.176, 6.12.113); \
             7.x kernels size the buffer from the host (verified: 7.2.7, 7.2.12)"
        )
    },
    fix: "use a 7.x UML kernel: `uml kernel build /usr/src/linux-source-7.2.tar.xz` (Debian's \
          linux-source-7.2 package) builds one; then `uml kernel use 7.2` makes it the default \
          (or pass --kernel 7.2, or set UML_KERNEL)",
}];

/// The first known incompatibility the boot log shows, if any. `version` is the kernel's, when
/// known, to name it in the cause.
pub fn diagnose(log: &str, version: Option<Version>) -> Option<Diagnosis> {
    for line in log.lines() {
        for known in KNOWN {
            if line.contains(known.needle) {
                return Some(Diagnosis {
                    id: known.id,
                    line: line.trim().chars().take(300).collect(),
                    cause: (known.cause)(version),
                    fix: known.fix.to_owned(),
                });
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The boot log of the real failure: Debian's 6.1.176 on a host with AMX (host kernel
    /// 6.18), init a shell script. This fault cannot be produced on a host without AMX, so the
    /// recorded log stands in for it there; where the host has AMX, the real-kernel tests see
    /// the same lines.
    const AMX_LOG_61: &str = include_str!("testdata/amx-6.1.176.log");

    #[test]
    fn recognises_the_xsave_failure_before_the_call_trace() {
        let d = diagnose(AMX_LOG_61, Some(Version::new(6, 1, 176))).unwrap();
        assert_eq!(d.id, "xsave-size");
        assert_eq!(d.line, "userspace - ptrace set fp regs failed, errno = 14");
        assert!(
            d.cause.starts_with("kernel 6.1.176 cannot run a process"),
            "{d}"
        );
        assert!(d.fix.contains("uml kernel build"), "{d}");
    }

    #[test]
    fn a_healthy_log_has_no_diagnosis() {
        let healthy = "Linux version 7.2.12\nRun /tmp/init as init process\nreboot: Power down\n";
        assert_eq!(diagnose(healthy, None), None);
    }
}
