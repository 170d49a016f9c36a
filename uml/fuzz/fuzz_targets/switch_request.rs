//! The `daemon` transport's control stream: any bytes a client may send on the switch's
//! control socket. (The `bess` transport has no request: a port is an accepted seqpacket
//! connection and every message a frame, see `uml::switch::bess`.)
//!
//! Parsing never panics; the switch never waits for more than [`MAX_REQUEST_LEN`] bytes; the
//! stream may arrive in any pieces (a prefix is never refused when the whole is accepted, and a
//! prefix that completes a request gives the same request); a complete request re-encodes to
//! one that parses alike; any `sockaddr_un` a client names reads back and describes itself
//! without panicking.

#![no_main]

use libfuzzer_sys::fuzz_target;
use uml::switch::request::{MAX_REQUEST_LEN, Parse, PeerAddr, SOCKADDR_LEN, parse};

fuzz_target!(|data: &[u8]| {
    let whole = parse(data);
    match &whole {
        Ok(Parse::Complete { request, len }) => {
            assert!(*len <= data.len() && *len <= MAX_REQUEST_LEN);
            let again = request.encode();
            match parse(&again) {
                Ok(Parse::Complete { request: same, .. }) => assert_eq!(&same, request),
                other => panic!("re-encoded request did not parse: {other:?}"),
            }
            let _ = request.addr.describe();
        }
        Ok(Parse::Incomplete { need }) => {
            assert!(
                *need > data.len() && *need <= MAX_REQUEST_LEN,
                "need {need}"
            );
        }
        Err(_) => {}
    }
    // The same bytes read in pieces: every prefix.
    for k in 0..data.len().min(MAX_REQUEST_LEN + 1) {
        let Some(prefix) = data.get(..k) else { break };
        match parse(prefix) {
            Err(e) => assert!(
                whole.is_err(),
                "prefix of {k} bytes refused ({e}), whole accepted"
            ),
            Ok(Parse::Complete { request, .. }) => match &whole {
                Ok(Parse::Complete { request: full, .. }) => assert_eq!(&request, full),
                other => panic!("prefix of {k} bytes complete, whole {other:?}"),
            },
            Ok(Parse::Incomplete { need }) => assert!(need > k && need <= MAX_REQUEST_LEN),
        }
    }
    if let Ok(addr) = PeerAddr::from_sockaddr(data) {
        assert_eq!(&addr.to_sockaddr()[..], &data[..SOCKADDR_LEN]);
        let _ = addr.describe();
    }
});
