//! The mconsole protocol: talk to a running UML kernel through its management socket, and
//! listen for the events it sends to a notify socket.
//!
//! * [`wire`] reads and writes the datagrams; nothing else in umlkit touches mconsole bytes.
//! * [`Client`] (blocking) and [`AsyncClient`] (tokio) send one request and collect its reply.
//! * [`NotifyListener`] and [`AsyncNotifyListener`] receive [`Notification`]s
//!   (`mconsole=notify:<path>` on the kernel command line).
//!
//! Everything the guest sends is untrusted. The guarantees, for both clients:
//! * every receive has a deadline ([`Client::with_timeout`], 5 s by default) and a whole reply
//!   has one too ([`Client::with_deadline`], 60 s), so a silent or trickling peer ends in
//!   [`Error::Timeout`], never a hang;
//! * the reply's total size is capped ([`Client::with_reply_limit`], 1 MiB of datagrams), so an
//!   endless `more = 1` stream ends in [`Error::ReplyTooLarge`];
//! * a chunk's `len` is bounded by the datagram and by 512 bytes, and a datagram that does not
//!   parse is [`Error::Malformed`];
//! * text is decoded lossily, without the NUL terminator;
//! * the client's socket is `connect`ed to the guest's socket, so the host kernel drops
//!   datagrams from any other sender (`unix_may_send` in `net/unix/af_unix.c`): a reply from an
//!   address other than the one the request went to never reaches us.
//!
//! Connecting also matters for long console-streaming replies. The UML kernel sends with a
//! non-blocking `sendto` and gives up on the reply at the first `EAGAIN`. For a receiver that
//! is not connected to the sender, the host caps the receive queue at
//! `net.unix.max_dgram_qlen` (10) datagrams, so a burst such as `sysrq m` (about 15 chunks)
//! loses its tail and its final chunk: `uml_mconsole`, which does not connect, then waits
//! forever (observed with Debian's uml-utilities 20070815). `unix_dgram_sendmsg` skips that cap
//! when the receiver is connected to the sender, so this client gets the whole reply.
//!
//! The kernel quirks handled here (`arch/um/drivers/mconsole_kern.c`, `mconsole_user.c`):
//! `err` is set only on the first chunk of each reply call, console-streaming commands
//! (`sysrq`, `stack`) end with an empty `more = 0` chunk, `proc` starts with a `"\n"` chunk,
//! `config`/`remove` return negative errnos cast to `u32`, and a wrong magic gets a headerless
//! text answer ([`Error::VersionZero`]). We always send version 2, so the kernel's double reply
//! to other versions never happens.

use std::path::PathBuf;
use std::time::Duration;

mod async_client;
mod client;
mod notify;
pub mod wire;

pub use async_client::{AsyncClient, AsyncNotifyListener};
pub use client::{Client, DISK_DRIVER_WAIT, REMOVE_OPEN_GRACE, ReplyAddress};
pub use notify::NotifyListener;
pub use wire::Notification;

/// How long one receive may wait by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a whole reply may take by default (console-streaming replies come in many chunks).
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(60);
/// The default cap on a reply's total size, counted as the bytes of all its datagrams.
pub const DEFAULT_REPLY_LIMIT: usize = 1 << 20;
/// The longest text one `log` request carries, as `uml_mconsole` splits it: the 512-byte data
/// field minus `"log "` and its NUL, minus one.
pub const LOG_CHUNK: usize = wire::MAX_DATA - "log ".len() - 2;

/// The guest's answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// 0 for success; otherwise 1 or, from `config`/`remove`, a negative errno as `u32`.
    pub err: u32,
    /// All chunks' text concatenated, lossily decoded, without NUL terminators.
    pub text: String,
}

impl Reply {
    pub fn is_ok(&self) -> bool {
        self.err == 0
    }
}

/// A failed mconsole operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("mconsole I/O failed")]
    Io(#[from] std::io::Error),
    #[error("cannot create an mconsole client socket")]
    Socket(#[source] std::io::Error),
    #[error("cannot reach the mconsole socket {} (is the UML instance running?)", path.display())]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot send {command:?} to the mconsole socket")]
    Send {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot receive the reply to {command:?}")]
    Receive {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the guest did not answer {command:?} within {after:?}")]
    Timeout { command: String, after: Duration },
    #[error("the guest's reply exceeded the limit of {limit} bytes")]
    ReplyTooLarge { limit: usize },
    #[error("the guest sent a malformed datagram")]
    Malformed(#[from] wire::WireError),
    #[error("the guest refused {command:?} with error {}: {}", describe_code(*code), crate::text::printable(message))]
    Guest {
        command: String,
        /// The raw `err` field (a negative errno appears as a large `u32`).
        code: u32,
        message: String,
    },
    #[error(
        "the command is {len} bytes; mconsole accepts at most {} bytes",
        wire::MAX_COMMAND
    )]
    CommandTooLong { len: usize },
    #[error("the peer does not speak mconsole version 2; it answered {0:?}")]
    VersionZero(String),
    #[error(
        "{dev:?} is not a device name; expected a name and unit such as ubd1, con0, ssl3, eth0 or mem, without '=' or blanks"
    )]
    BadDevice { dev: String },
    #[error("{key:?} is not a SysRq key; expected one printable ASCII character")]
    BadSysrqKey { key: char },
    #[error("cannot bind the notify socket {}", path.display())]
    Bind {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot receive a notification")]
    NotifyReceive(#[source] std::io::Error),
    #[error("the async mconsole API must be used from within a tokio runtime")]
    NoRuntime,
    #[error(
        "the guest's disk driver has not started ({dev} not added): its /proc/devices names no \"ubd\" block device after {waited:?}. The driver starts late in the kernel's boot, after mconsole answers; a disk added before it would stall the guest's mconsole and be registered twice. Add it once the guest has booted"
    )]
    DiskDriverNotUp { dev: String, waited: Duration },
}

/// A reply's `err` as a reader wants it: `1`, or `-19 (ENODEV)` for a negative errno.
pub fn describe_code(code: u32) -> String {
    let signed = code as i32;
    if signed >= 0 {
        return code.to_string();
    }
    let errno = nix::errno::Errno::from_raw(signed.saturating_neg());
    if errno == nix::errno::Errno::UnknownErrno {
        signed.to_string()
    } else {
        format!("{signed} ({errno:?})")
    }
}

/// Collects reply chunks into a [`Reply`], enforcing the size cap. Shared by both clients so
/// that they treat untrusted input identically.
#[derive(Debug)]
struct ReplyAssembler {
    err: Option<u32>,
    text: Vec<u8>,
    received: usize,
    limit: usize,
}

impl ReplyAssembler {
    fn new(limit: usize) -> Self {
        ReplyAssembler {
            err: None,
            text: Vec::new(),
            received: 0,
            limit,
        }
    }

    /// Take one datagram; `Ok(true)` when it was the last chunk.
    fn push(&mut self, datagram: &[u8]) -> Result<bool, Error> {
        // Count whole datagrams, headers included: an endless stream of empty `more = 1`
        // chunks adds no text but must still hit the cap.
        self.received = self.received.saturating_add(datagram.len());
        if self.received > self.limit {
            return Err(Error::ReplyTooLarge { limit: self.limit });
        }
        let chunk = wire::ReplyChunk::parse(datagram).map_err(|e| match e {
            wire::WireError::VersionZero(text) => Error::VersionZero(text),
            other => Error::Malformed(other),
        })?;
        // The kernel sets `err` on the first chunk of each reply call only; `proc` can report a
        // read failure in a later call, after its "\n" chunk (mconsole_proc). The first
        // non-zero value is the reply's error, which also matches `uml_mconsole` there.
        match self.err {
            None | Some(0) => self.err = Some(chunk.err),
            Some(_) => {}
        }
        self.text.extend_from_slice(&chunk.data);
        Ok(!chunk.more)
    }

    fn finish(self) -> Reply {
        Reply {
            err: self.err.unwrap_or(0),
            text: String::from_utf8_lossy(&self.text).into_owned(),
        }
    }
}

/// Turn a raw reply into the text of a successful one, or [`Error::Guest`].
fn guest_result(command: &str, reply: Reply) -> Result<String, Error> {
    if reply.is_ok() {
        Ok(reply.text)
    } else {
        Err(Error::Guest {
            command: command.to_owned(),
            code: reply.err,
            message: reply.text,
        })
    }
}

/// The command texts of the typed operations, shared by both clients.
mod command {
    use super::Error;

    pub(super) fn check_device(dev: &str) -> Result<(), Error> {
        let bad = dev.is_empty()
            || dev
                .chars()
                .any(|c| c == '=' || c.is_whitespace() || c == '\0');
        if bad {
            return Err(Error::BadDevice {
                dev: dev.to_owned(),
            });
        }
        Ok(())
    }

    pub(super) fn config_get(dev: &str) -> Result<String, Error> {
        check_device(dev)?;
        Ok(format!("config {dev}"))
    }

    pub(super) fn config_set(dev: &str, spec: &str) -> Result<String, Error> {
        check_device(dev)?;
        Ok(format!("config {dev}={spec}"))
    }

    /// Whether setting up `dev` needs the guest's disk driver running ([`disk_driver_up`]).
    pub(super) fn needs_disk_driver(dev: &str) -> bool {
        dev.starts_with("ubd")
    }

    /// Whether the guest's `/proc/devices` lists the ubd block driver, which registers its
    /// major in `ubd_init`, a late initcall (ubd_kern.c). mconsole answers from an earlier
    /// initcall, and a `config ubdN=` sent in between registers the disk before the driver's
    /// I/O thread exists: the guest's mconsole stalls on it (seen on 7.2.13, with ubd_init held
    /// back by `initcall_blacklist`), and `ubd_init` then registers the disk a second time
    /// (6.1.176 and 7.2.12 log `kobject ... tried to init an initialized object`).
    pub(super) fn disk_driver_up(proc_devices: &str) -> bool {
        proc_devices
            .lines()
            .skip_while(|l| l.trim() != "Block devices:")
            .any(|l| {
                let mut f = l.split_whitespace();
                f.next().is_some_and(|n| n.parse::<u32>().is_ok()) && f.next() == Some("ubd")
            })
    }

    pub(super) fn remove(dev: &str) -> Result<String, Error> {
        check_device(dev)?;
        Ok(format!("remove {dev}"))
    }

    pub(super) fn sysrq(key: char) -> Result<String, Error> {
        if !key.is_ascii_graphic() {
            return Err(Error::BadSysrqKey { key });
        }
        Ok(format!("sysrq {key}"))
    }

    /// `log` requests as `uml_mconsole` sends them: at most [`super::LOG_CHUNK`] bytes each
    /// (split at character boundaries), then `"log \n"` if the text did not end in a newline,
    /// because the kernel keeps an unterminated line buffered (it may surface in the next
    /// console-streaming reply).
    pub(super) fn log(text: &str) -> Vec<String> {
        let mut requests = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let mut cut = rest.len().min(super::LOG_CHUNK);
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            let (chunk, tail) = rest.split_at(cut);
            requests.push(format!("log {chunk}"));
            rest = tail;
        }
        if !text.ends_with('\n') {
            requests.push("log \n".to_owned());
        }
        requests
    }

    /// The kernel sends `proc` output after a first chunk holding just `"\n"` (mconsole_proc).
    pub(super) fn strip_proc_newline(text: String) -> String {
        match text.strip_prefix('\n') {
            Some(rest) => rest.to_owned(),
            None => text,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_disk_driver_is_up_once_proc_devices_lists_its_block_major() {
        let booted = "Character devices:\n  1 mem\n136 pts\n\nBlock devices:\n  7 loop\n 98 ubd\n259 blkext\n";
        assert!(command::disk_driver_up(booted));
        let early = "Character devices:\n  1 mem\n\nBlock devices:\n  7 loop\n259 blkext\n";
        assert!(!command::disk_driver_up(early));
        // The name among the character devices, or not as a name, is not it.
        assert!(!command::disk_driver_up(
            "Character devices:\n 98 ubd\nBlock devices:\n"
        ));
        assert!(!command::disk_driver_up(
            "Block devices:\n 98 ubdx\nx ubd\n"
        ));
        assert!(command::needs_disk_driver("ubd1") && !command::needs_disk_driver("con1"));
    }

    fn chunk(err: u32, more: bool, text: &str) -> Vec<u8> {
        wire::ReplyChunk {
            err,
            more,
            data: text.as_bytes().to_vec(),
        }
        .encode()
        .unwrap()
    }

    #[test]
    fn negative_errnos_are_shown_with_their_name() {
        assert_eq!(describe_code(1), "1");
        assert_eq!(describe_code((-19i32) as u32), "-19 (ENODEV)");
        assert_eq!(describe_code(0xFFFF_FFF0), "-16 (EBUSY)");
        assert_eq!(describe_code(0xFFFF_FFEA), "-22 (EINVAL)");
        assert_eq!(describe_code(0x8000_0000), "-2147483648");
    }

    #[test]
    fn guest_error_message_names_command_code_and_text() {
        let e = guest_result(
            "remove ubd9",
            Reply {
                err: (-19i32) as u32,
                text: "Device doesn't exist".into(),
            },
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "the guest refused \"remove ubd9\" with error -19 (ENODEV): Device doesn't exist"
        );
    }

    #[test]
    fn assembler_concatenates_chunks_and_keeps_the_first_error() {
        let mut a = ReplyAssembler::new(DEFAULT_REPLY_LIMIT);
        assert!(!a.push(&chunk(0, true, "\n")).unwrap());
        assert!(!a.push(&chunk(0, true, "MemTotal: 1\n")).unwrap());
        assert!(a.push(&chunk(0, false, "")).unwrap());
        assert_eq!(
            a.finish(),
            Reply {
                err: 0,
                text: "\nMemTotal: 1\n".into()
            }
        );

        let mut a = ReplyAssembler::new(DEFAULT_REPLY_LIMIT);
        a.push(&chunk(1, true, "bad ")).unwrap();
        a.push(&chunk(0, false, "thing")).unwrap();
        assert_eq!(a.finish().err, 1);

        let mut a = ReplyAssembler::new(DEFAULT_REPLY_LIMIT);
        a.push(&chunk(0, true, "\n")).unwrap();
        a.push(&chunk(1, false, "Read of file failed")).unwrap();
        assert_eq!(a.finish().err, 1);
    }

    #[test]
    fn assembler_decodes_invalid_utf8_lossily() {
        let mut a = ReplyAssembler::new(DEFAULT_REPLY_LIMIT);
        let mut bytes = chunk(0, false, "ab");
        bytes[12] = 0xFF;
        a.push(&bytes).unwrap();
        assert_eq!(a.finish().text, "\u{FFFD}b");
    }

    #[test]
    fn endless_empty_chunks_hit_the_cap() {
        let mut a = ReplyAssembler::new(1000);
        let empty = chunk(0, true, "");
        let mut n = 0;
        let err = loop {
            match a.push(&empty) {
                Ok(false) => n += 1,
                Ok(true) => panic!("an empty more=1 chunk ended the reply"),
                Err(e) => break e,
            }
        };
        assert!(matches!(err, Error::ReplyTooLarge { limit: 1000 }));
        assert_eq!(n, 1000 / 13);
    }

    #[test]
    fn log_is_split_like_uml_mconsole() {
        assert_eq!(command::log("hello\n"), vec!["log hello\n"]);
        assert_eq!(command::log("hello"), vec!["log hello", "log \n"]);
        assert_eq!(command::log(""), vec!["log \n"]);
        let long = "x".repeat(LOG_CHUNK * 2 + 3);
        let requests = command::log(&long);
        assert_eq!(requests.len(), 4);
        assert_eq!(requests[0].len(), 4 + 506);
        assert_eq!(requests[2], "log xxx");
        assert_eq!(requests[3], "log \n");
        // Multi-byte characters are never cut.
        let wide = "é".repeat(300);
        let requests = command::log(&wide);
        assert!(requests.iter().all(|r| r.len() <= 4 + LOG_CHUNK));
        let joined: String = requests[..2].iter().map(|r| &r[4..]).collect();
        assert_eq!(joined, wide);
    }

    #[test]
    fn device_names_that_would_change_the_command_are_refused() {
        assert!(command::config_get("ubd1").is_ok());
        for bad in ["", "ubd1=/etc/passwd", "ubd1 x", "con\0"] {
            assert!(matches!(
                command::config_get(bad),
                Err(Error::BadDevice { .. })
            ));
        }
        assert!(matches!(
            command::sysrq('\n'),
            Err(Error::BadSysrqKey { .. })
        ));
        assert_eq!(command::sysrq('m').unwrap(), "sysrq m");
    }

    #[test]
    fn proc_leading_newline_packet_is_stripped_once() {
        assert_eq!(command::strip_proc_newline("\n\nx".into()), "\nx");
        assert_eq!(command::strip_proc_newline("x".into()), "x");
    }
}
