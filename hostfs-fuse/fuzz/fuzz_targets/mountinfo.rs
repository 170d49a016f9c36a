//! Parse arbitrary text as a guest's `/proc/1/mountinfo` (it comes from the guest, so it is
//! untrusted): parsing and mapping to mounts must never panic, whatever the escapes, fields
//! or device numbers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use umlfs::source::{guest_mounts, parse_mountinfo};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let info = parse_mountinfo(&text);
    for m in guest_mounts(&info) {
        assert!(m.point.starts_with('/'));
    }
    let _ = uml::ubd::parse_config(&text);
});
