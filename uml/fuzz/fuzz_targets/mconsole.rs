#![no_main]

use libfuzzer_sys::fuzz_target;
use uml::mconsole::wire::{ReplyChunk, Request};

// Any bytes a guest (or anything else that can reach our sockets) sends must parse or fail
// cleanly; whatever parses must encode back to something that parses to the same value.
// (Notify datagrams have their own target, `notify`.)
fuzz_target!(|data: &[u8]| {
    if let Ok(chunk) = ReplyChunk::parse(data) {
        assert!(chunk.data.len() <= 512);
        if let Ok(bytes) = chunk.encode() {
            assert_eq!(ReplyChunk::parse(&bytes).as_ref(), Ok(&chunk));
        }
    }
    if let Ok(request) = Request::parse(data) {
        assert_eq!(Request::parse(&request.encode()).as_ref(), Ok(&request));
        assert_eq!(
            Request::parse(&request.encode_short()).as_ref(),
            Ok(&request)
        );
    }
});
