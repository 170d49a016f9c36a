//! What the guest's answers to mconsole requests mean: the text of `version`,
//! `config conN`/`sslN` and `proc meminfo` read as typed values (`config ubdN` is read by
//! [`crate::ubd::parse_config`], beside the ubd naming). The client ([`crate::mconsole`])
//! carries the text; this module and [`crate::ubd`] are the one place that reads it.

/// The kernel release in a `version` reply: `Linux <nodename> <release> <version> <machine>`
/// (`mconsole_version` in `mconsole_kern.c`, from `utsname()`).
pub fn kernel_release(version: &str) -> Option<&str> {
    version.split_whitespace().nth(2)
}

/// The memory the guest has, in bytes: `MemTotal` of its `/proc/meminfo` (in KiB there).
pub fn mem_total_bytes(meminfo: &str) -> Option<u64> {
    meminfo.lines().find_map(|l| {
        let kib: u64 = l
            .strip_prefix("MemTotal:")?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        Some(kib.saturating_mul(1024))
    })
}

/// Whether a `config conN`/`sslN` reply puts the line on a channel (`line_get_config` in
/// `line.c`): not on none (`null`, `none`, an empty reply).
pub fn line_configured(reply: &str) -> bool {
    !matches!(reply.trim(), "" | "null" | "none")
}

/// The host pty a line is attached to, from a `config conN`/`sslN` reply: `pts:/dev/pts/3`
/// or `pty:/dev/ptyp0`, alone or as the input and output of the line (the same device).
/// `None` while the line is on `pts` or `pty` but the guest has not opened it yet.
pub fn line_pty(reply: &str) -> Option<&str> {
    reply
        .trim()
        .split(',')
        .find_map(|c| c.strip_prefix("pts:").or_else(|| c.strip_prefix("pty:")))
        .filter(|p| p.starts_with("/dev/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_gives_the_release() {
        assert_eq!(
            kernel_release("Linux g1 7.2.13 #1 Mon Jan 1 00:00:00 UTC 2026 x86_64"),
            Some("7.2.13")
        );
        assert_eq!(kernel_release("Linux"), None);
    }

    #[test]
    fn meminfo_gives_mem_total_in_bytes() {
        let text = "MemTotal:          61632 kB\nMemFree:  100 kB\n";
        assert_eq!(mem_total_bytes(text), Some(61632 * 1024));
        assert_eq!(mem_total_bytes("MemFree: 1 kB\n"), None);
        assert_eq!(mem_total_bytes("MemTotal: lots\n"), None);
    }

    #[test]
    fn line_replies_tell_channel_and_pty() {
        assert!(!line_configured("null"));
        assert!(!line_configured("none\n"));
        assert!(line_configured("pts"));
        assert_eq!(line_pty("pts:/dev/pts/3"), Some("/dev/pts/3"));
        assert_eq!(
            line_pty("pts:/dev/pts/3,pts:/dev/pts/3\n"),
            Some("/dev/pts/3")
        );
        assert_eq!(line_pty("pts"), None);
        assert_eq!(line_pty("fd:0,fd:1"), None);
        assert_eq!(line_pty("pts:relative"), None);
    }
}
