#![no_main]

use libfuzzer_sys::fuzz_target;
use uml::cow::header;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(h)) = header::parse(data) {
        // Anything accepted has sane offsets and encodes back to the same header.
        assert!(h.bitmap_offset() <= h.data_offset());
        let bytes = h.encode().expect("an accepted header encodes");
        assert_eq!(header::parse(&bytes), Ok(Some(h)));
    }
});
