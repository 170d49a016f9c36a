//! `lpj=`: the delay loop's calibration, preset from the host.
//!
//! Every UML boot calibrates the busy-wait loop behind `udelay()` (`Calibrating delay loop`,
//! init/calibrate.c): 0.1–0.2 s of a 0.25 s boot on a 2-core host, measured with `initcall_debug`
//! and printk times on 7.2.13. `lpj=` skips it. The value only scales busy waits, which UML's
//! own drivers hardly make (a 1 µs wait in time-travel mode, virtio PCI), and the calibration
//! itself varies by a third from boot to boot under UML (5,041 and 6,542 BogoMIPS on one host).
//!
//! UML's `__delay` (arch/x86/um/delay.c) is a `dec`/`jnz` loop, one iteration per cycle, and
//! UML's HZ is always 100, so a jiffy is 1/100 of the host's cycle rate. The host's own
//! BogoMIPS on x86 is twice its TSC rate in MHz: loops per jiffy = BogoMIPS × 10⁶ / 2 / 100.

use std::io::Read;

/// The most of `/proc/cpuinfo` that is read: the first CPU's block is enough.
const CPUINFO_MAX: u64 = 64 * 1024;

/// `lpj=N` for a UML kernel on this host, or `None` where it cannot be told (a host other than
/// x86, no BogoMIPS line): the kernel then calibrates as usual.
pub fn lpj_word() -> Option<String> {
    if !cfg!(any(target_arch = "x86_64", target_arch = "x86")) {
        return None;
    }
    let mut text = String::new();
    std::fs::File::open("/proc/cpuinfo")
        .ok()?
        .take(CPUINFO_MAX)
        .read_to_string(&mut text)
        .ok()?;
    lpj_from_cpuinfo(&text).map(|lpj| format!("lpj={lpj}"))
}

/// Loops per UML jiffy from the first `bogomips` line of an x86 `/proc/cpuinfo`.
pub fn lpj_from_cpuinfo(text: &str) -> Option<u64> {
    let value = text.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "bogomips").then(|| value.trim())
    })?;
    let bogomips: f64 = value.parse().ok()?;
    // 10 MHz to 100 GHz: anything else is not a CPU's rate.
    if !(20.0..=200_000.0).contains(&bogomips) {
        return None;
    }
    Some((bogomips * 5_000.0).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loops_per_jiffy_come_from_the_first_cpus_bogomips() {
        let cpuinfo = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R)\nbogomips\t: 5200.00\n\n\
                       processor\t: 1\nbogomips\t: 4800.00\n";
        // 2,600 MHz at HZ=100: 26,000,000 loops per jiffy (the kernel measured 25.2 and 32.7
        // million on this host).
        assert_eq!(lpj_from_cpuinfo(cpuinfo), Some(26_000_000));
    }

    #[test]
    fn no_usable_bogomips_gives_no_preset() {
        for cpuinfo in [
            "",
            "processor\t: 0\n",
            "bogomips\t: fast\n",
            "bogomips\t: 0.00\n",
            "bogomips\t: -5\n",
            "bogomips\t: 1e300\n",
            "BogoMIPS\t: 50.00\n",
        ] {
            assert_eq!(lpj_from_cpuinfo(cpuinfo), None, "{cpuinfo:?}");
        }
    }

    #[test]
    fn the_preset_is_an_option_the_checker_knows() {
        let word = format!("lpj={}", lpj_from_cpuinfo("bogomips\t: 5200.00\n").unwrap());
        let report = crate::check::check(
            &crate::cmdline::CommandLine::parse(std::slice::from_ref(&word)),
            &crate::check::CheckEnv::offline(),
        );
        assert!(
            report.findings.iter().all(|f| !f.message.contains("lpj")),
            "{word}: {report:?}"
        );
    }
}
