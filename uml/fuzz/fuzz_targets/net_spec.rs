//! `--net` specs and the L2TPv3 data header: parsing any spec must not panic, a parsed spec's
//! kernel argument has no byte the kernel would split a value at; any datagram decodes to a
//! frame or to nothing, and what is encoded decodes back.

#![no_main]

use libfuzzer_sys::fuzz_target;
use uml::kernel::{Profile, Version};
use uml::net::Spec;
use uml::net::l2tpv3::Codec;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(spec) = Spec::parse(&text) {
        for profile in [
            Profile::assumed(Version::new(6, 1, 176)),
            Profile::assumed(Version::new(7, 2, 13)),
        ] {
            if let Ok(Some(arg)) = spec.kernel_arg(&text, 0, "fe:fd:00:00:00:01", &profile) {
                assert!(!arg.contains(' ') && !arg.contains('\0'), "{arg:?}");
            }
        }
        if let Spec::L2tpv3(tunnel) = &spec
            && let Ok(mut codec) = Codec::from_keys(&tunnel.keys)
        {
            let _ = codec.decode(data);
            let mut out = Vec::new();
            codec.encode(data, &mut out);
            // A symmetric session (the same value both ways) reads back what it sends.
            let get = |k: &str| tunnel.keys.iter().find(|(key, _)| key == k).map(|(_, v)| v);
            if get("rx_session") == get("tx_session") && get("rx_cookie") == get("tx_cookie") {
                assert_eq!(codec.decode(&out), Some(data));
            }
        }
    }
});
