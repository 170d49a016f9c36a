//! Notify datagrams: what a guest kernel (or anything that can reach the socket) sends to
//! `mconsole=notify:<path>`, read by `uml run` (the listener of `--detach` and of the
//! foreground run) and by umld. Parsing never panics; what parses stays within the wire's
//! bounds; and since `uml run` forwards each notification re-encoded to umld, whatever it can
//! re-encode must parse to the same notification there.

#![no_main]

use std::os::unix::ffi::OsStrExt;

use libfuzzer_sys::fuzz_target;
use uml::mconsole::Notification;
use uml::mconsole::wire::MAX_DATA;

fuzz_target!(|data: &[u8]| {
    let Ok(notification) = Notification::parse(data) else {
        return;
    };
    match &notification {
        Notification::Socket { mconsole } => {
            let bytes = mconsole.as_os_str().as_bytes();
            assert!(bytes.len() <= MAX_DATA && !bytes.contains(&0));
        }
        Notification::Panic { message } => assert!(!message.contains('\0')),
        Notification::User { data: text } => assert!(text.len() <= MAX_DATA),
        Notification::Hang => {}
    }
    if let Ok(bytes) = notification.encode() {
        assert_eq!(Notification::parse(&bytes).as_ref(), Ok(&notification));
    }
});
