#![no_main]

use libfuzzer_sys::fuzz_target;
use uml::switch::request::{MAX_REQUEST_LEN, Parse, parse};

// Any bytes a client may send on the control socket: parsing never panics, a complete request
// never claims more bytes than it was given, and it re-encodes to a request that parses alike.
fuzz_target!(|data: &[u8]| {
    if let Ok(Parse::Complete { request, len }) = parse(data) {
        assert!(len <= data.len() && len <= MAX_REQUEST_LEN);
        let again = request.encode();
        match parse(&again) {
            Ok(Parse::Complete { request: same, .. }) => assert_eq!(same, request),
            other => panic!("re-encoded request did not parse: {other:?}"),
        }
    }
});
