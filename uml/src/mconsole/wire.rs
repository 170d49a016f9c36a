//! The mconsole datagrams, byte for byte: requests, reply chunks and notifications.
//!
//! This is the only code in umlkit that reads or writes mconsole bytes. Every field is a `u32`
//! in host byte order with no padding (`arch/um/include/shared/mconsole.h`; the kernel never
//! converts byte order). Parsing never panics: a datagram that does not have the exact shape the
//! kernel sends is a [`WireError`] naming what was wrong.
//!
//! | datagram | layout |
//! |---|---|
//! | request | magic, version, len, data (len < 512); sent as 524 bytes or as 12 + len |
//! | reply chunk | err, more, len, data (len counts the trailing NUL, at most 512) |
//! | notification | magic, version, type, len, data (len at most 512) |

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// `MCONSOLE_MAGIC`: first field of requests and notifications.
pub const MAGIC: u32 = 0xCAFE_BABE;
/// `MCONSOLE_VERSION`: the only version the 6.1 kernel accepts.
pub const VERSION: u32 = 2;
/// `MCONSOLE_MAX_DATA`: size of the data field of every datagram.
pub const MAX_DATA: usize = 512;
/// The longest command the kernel accepts (`len` must be below [`MAX_DATA`]).
pub const MAX_COMMAND: usize = MAX_DATA - 1;
/// The longest text one reply chunk carries (the data field ends in a NUL).
pub const MAX_CHUNK_TEXT: usize = MAX_DATA - 1;
/// Bytes before the data in a request.
pub const REQUEST_HEADER: usize = 12;
/// A full request as `uml_mconsole` sends it: header plus the whole data field.
pub const REQUEST_SIZE: usize = REQUEST_HEADER + MAX_DATA;
/// Bytes before the data in a reply chunk.
pub const REPLY_HEADER: usize = 12;
/// Bytes before the data in a notification.
pub const NOTIFY_HEADER: usize = 16;
/// Largest datagram either side legitimately sends; receive buffers are larger than this so
/// that an oversized datagram is seen as such rather than silently truncated to a valid one.
pub const MAX_DATAGRAM: usize = NOTIFY_HEADER + MAX_DATA;

/// The plain-text answer the kernel sends, without any header, to a datagram whose magic is
/// wrong (`mconsole_get_request` in `mconsole_user.c` treats it as a "version 0" client).
const VERSION_ZERO_PREFIX: &[u8] = b"ERR Version 0 mconsole";

/// A datagram that is not a well-formed mconsole request, reply chunk or notification, or
/// a value that cannot be encoded as one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("a {kind} datagram of {len} bytes is shorter than its {header}-byte header")]
    TooShort {
        kind: &'static str,
        len: usize,
        header: usize,
    },
    #[error("a {kind} datagram has magic {found:#010x}; expected {MAGIC:#010x}")]
    BadMagic { kind: &'static str, found: u32 },
    #[error("a {kind} datagram has protocol version {found}; only version {VERSION} exists")]
    BadVersion { kind: &'static str, found: u32 },
    #[error(
        "notification type {found} is unknown; accepted are 0 (socket), 1 (panic), 2 (hang) and 3 (user)"
    )]
    BadType { found: u32 },
    #[error("a reply chunk has more={found}; accepted are 0 (last chunk) and 1 (more follow)")]
    BadMore { found: u32 },
    #[error("a {kind} datagram declares {len} data bytes but the field holds at most {MAX_DATA}")]
    LengthTooLarge { kind: &'static str, len: u32 },
    #[error("a {kind} datagram declares {len} data bytes but only {available} follow the header")]
    LengthBeyondDatagram {
        kind: &'static str,
        len: u32,
        available: usize,
    },
    #[error("the peer answered like a UML kernel to a version 0 client: {0:?}")]
    VersionZero(String),
    #[error("{what} is {len} bytes; at most {max} fit in one datagram")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{what} contains a NUL byte, which would end it early on the other side")]
    ContainsNul { what: &'static str },
}

fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    let mut field = [0u8; 4];
    if let Some(src) = bytes.get(offset..offset + 4) {
        field.copy_from_slice(src);
    }
    u32::from_ne_bytes(field)
}

/// The data a header's `len` field points at, checked against the field size and the
/// datagram's real length.
fn data_field<'a>(
    kind: &'static str,
    datagram: &'a [u8],
    header: usize,
    len: u32,
) -> Result<&'a [u8], WireError> {
    let available = datagram.len().saturating_sub(header);
    let wanted = usize::try_from(len).unwrap_or(usize::MAX);
    if wanted > MAX_DATA {
        return Err(WireError::LengthTooLarge { kind, len });
    }
    if wanted > available {
        return Err(WireError::LengthBeyondDatagram {
            kind,
            len,
            available,
        });
    }
    Ok(datagram.get(header..header + wanted).unwrap_or_default())
}

/// Bytes up to the first NUL: the kernel's text is a C string, and `uml_mconsole` prints it
/// with `%s`, so anything after a NUL is not part of it.
fn c_text(data: &[u8]) -> &[u8] {
    match data.iter().position(|&b| b == 0) {
        Some(nul) => data.get(..nul).unwrap_or_default(),
        None => data,
    }
}

/// One request to the kernel: a command such as `version` or `config ubd1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    command: Vec<u8>,
}

impl Request {
    /// A request for `command`.
    ///
    /// # Errors
    /// [`WireError::TooLong`] when the command is over [`MAX_COMMAND`] bytes (the kernel would
    /// answer `Request too large`; `uml_mconsole` silently cuts it instead).
    pub fn new(command: &[u8]) -> Result<Request, WireError> {
        if command.len() > MAX_COMMAND {
            return Err(WireError::TooLong {
                what: "the command",
                len: command.len(),
                max: MAX_COMMAND,
            });
        }
        Ok(Request {
            command: command.to_vec(),
        })
    }

    pub fn command(&self) -> &[u8] {
        &self.command
    }

    fn header(&self) -> [u8; REQUEST_HEADER] {
        let mut out = [0u8; REQUEST_HEADER];
        out[0..4].copy_from_slice(&MAGIC.to_ne_bytes());
        out[4..8].copy_from_slice(&VERSION.to_ne_bytes());
        // `new` bounds the command to 511 bytes, so the cast is lossless.
        out[8..12].copy_from_slice(&(self.command.len() as u32).to_ne_bytes());
        out
    }

    /// The full 524-byte form `uml_mconsole` sends: the data field NUL-padded to 512 bytes.
    pub fn encode(&self) -> [u8; REQUEST_SIZE] {
        let mut out = [0u8; REQUEST_SIZE];
        out[..REQUEST_HEADER].copy_from_slice(&self.header());
        out[REQUEST_HEADER..REQUEST_HEADER + self.command.len()].copy_from_slice(&self.command);
        out
    }

    /// The short form, header plus exactly the command bytes, which the kernel accepts too.
    pub fn encode_short(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(REQUEST_HEADER + self.command.len());
        out.extend_from_slice(&self.header());
        out.extend_from_slice(&self.command);
        out
    }

    /// Parse a request as the kernel does (for test peers that play the kernel's part).
    ///
    /// # Errors
    /// A [`WireError`] for a short datagram, wrong magic or version, or a `len` of 512 or
    /// more or beyond the datagram.
    pub fn parse(datagram: &[u8]) -> Result<Request, WireError> {
        const KIND: &str = "request";
        if datagram.len() < REQUEST_HEADER {
            return Err(WireError::TooShort {
                kind: KIND,
                len: datagram.len(),
                header: REQUEST_HEADER,
            });
        }
        let magic = u32_at(datagram, 0);
        if magic != MAGIC {
            return Err(WireError::BadMagic {
                kind: KIND,
                found: magic,
            });
        }
        let version = u32_at(datagram, 4);
        if version != VERSION {
            return Err(WireError::BadVersion {
                kind: KIND,
                found: version,
            });
        }
        let len = u32_at(datagram, 8);
        let data = data_field(KIND, datagram, REQUEST_HEADER, len)?;
        Request::new(data).map_err(|_| WireError::LengthTooLarge { kind: KIND, len })
    }
}

/// One reply datagram. A reply is one or more chunks; the last has `more == false`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyChunk {
    /// 0 for success. `config`/`remove` pass a driver's negative errno through as `u32`.
    pub err: u32,
    /// Whether further chunks of the same reply follow.
    pub more: bool,
    /// The chunk's text without its NUL terminator (raw bytes; the client decodes lossily).
    pub data: Vec<u8>,
}

impl ReplyChunk {
    /// Parse one reply datagram.
    ///
    /// The text ends at the first NUL inside `len` (the kernel always sends one). Bytes after
    /// `12 + len` are ignored, so the full 524-byte form some kernels send parses too.
    ///
    /// # Errors
    /// [`WireError::VersionZero`] for the kernel's raw-text answer to a bad magic; otherwise a
    /// [`WireError`] for a datagram under 12 bytes, `more` other than 0 or 1, or a `len` over 512
    /// or beyond the datagram.
    pub fn parse(datagram: &[u8]) -> Result<ReplyChunk, WireError> {
        const KIND: &str = "reply";
        if datagram.starts_with(VERSION_ZERO_PREFIX) {
            let text = String::from_utf8_lossy(c_text(datagram));
            return Err(WireError::VersionZero(text.into_owned()));
        }
        if datagram.len() < REPLY_HEADER {
            return Err(WireError::TooShort {
                kind: KIND,
                len: datagram.len(),
                header: REPLY_HEADER,
            });
        }
        let err = u32_at(datagram, 0);
        let more = match u32_at(datagram, 4) {
            0 => false,
            1 => true,
            found => return Err(WireError::BadMore { found }),
        };
        let len = u32_at(datagram, 8);
        let data = data_field(KIND, datagram, REPLY_HEADER, len)?;
        Ok(ReplyChunk {
            err,
            more,
            data: c_text(data).to_vec(),
        })
    }

    /// Encode as the kernel does (`mconsole_reply_len`): text, NUL, `len` counting the NUL.
    ///
    /// # Errors
    /// [`WireError::TooLong`] over 511 bytes of text; [`WireError::ContainsNul`].
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        if self.data.len() > MAX_CHUNK_TEXT {
            return Err(WireError::TooLong {
                what: "a reply chunk's text",
                len: self.data.len(),
                max: MAX_CHUNK_TEXT,
            });
        }
        if self.data.contains(&0) {
            return Err(WireError::ContainsNul {
                what: "a reply chunk's text",
            });
        }
        let mut out = Vec::with_capacity(REPLY_HEADER + self.data.len() + 1);
        out.extend_from_slice(&self.err.to_ne_bytes());
        out.extend_from_slice(&u32::from(self.more).to_ne_bytes());
        out.extend_from_slice(&(self.data.len() as u32 + 1).to_ne_bytes());
        out.extend_from_slice(&self.data);
        out.push(0);
        Ok(out)
    }
}

/// Notification type numbers (`enum mconsole_notify_type`, a 4-byte C enum).
const NOTIFY_SOCKET: u32 = 0;
const NOTIFY_PANIC: u32 = 1;
const NOTIFY_HANG: u32 = 2;
const NOTIFY_USER: u32 = 3;

/// An event the kernel (or `uml_watchdog`) sends to the `mconsole=notify:<path>` socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    /// The mconsole socket is ready (sent once, mid-boot); requests are answered from now on.
    Socket { mconsole: PathBuf },
    /// The kernel panicked; the message as the kernel formatted it, without the NUL.
    Panic { message: String },
    /// The guest's watchdog stopped being pinged (sent by `uml_watchdog`, never the kernel).
    Hang,
    /// The guest wrote these bytes to `/proc/mconsole` (one `write()`, at most 512 bytes).
    User { data: Vec<u8> },
}

impl Notification {
    /// Parse one notification datagram.
    ///
    /// # Errors
    /// A [`WireError`] for a datagram under 16 bytes, wrong magic or version, an unknown type,
    /// or a `len` over 512 or beyond the datagram.
    pub fn parse(datagram: &[u8]) -> Result<Notification, WireError> {
        const KIND: &str = "notification";
        if datagram.len() < NOTIFY_HEADER {
            return Err(WireError::TooShort {
                kind: KIND,
                len: datagram.len(),
                header: NOTIFY_HEADER,
            });
        }
        let magic = u32_at(datagram, 0);
        if magic != MAGIC {
            return Err(WireError::BadMagic {
                kind: KIND,
                found: magic,
            });
        }
        let version = u32_at(datagram, 4);
        let kind = u32_at(datagram, 8);
        // uml_watchdog (uml-utilities) leaves the version of its hang notification at 0.
        if version != VERSION && !(version == 0 && kind == NOTIFY_HANG) {
            return Err(WireError::BadVersion {
                kind: KIND,
                found: version,
            });
        }
        let len = u32_at(datagram, 12);
        let data = data_field(KIND, datagram, NOTIFY_HEADER, len)?;
        match kind {
            // The kernel sends the socket path and the panic message with their NUL
            // (`mconsole_kern.c`: `strlen(sock_name) + 1`), user data exactly as written.
            NOTIFY_SOCKET => Ok(Notification::Socket {
                mconsole: PathBuf::from(OsStr::from_bytes(c_text(data))),
            }),
            NOTIFY_PANIC => Ok(Notification::Panic {
                message: String::from_utf8_lossy(c_text(data)).into_owned(),
            }),
            NOTIFY_HANG => Ok(Notification::Hang),
            NOTIFY_USER => Ok(Notification::User {
                data: data.to_vec(),
            }),
            found => Err(WireError::BadType { found }),
        }
    }

    /// Encode as the kernel does (`mconsole_notify` in `mconsole_user.c`).
    ///
    /// # Errors
    /// [`WireError::TooLong`] when the payload exceeds 512 bytes (NUL included for the
    /// socket path and panic message); [`WireError::ContainsNul`] for a path or message with
    /// a NUL inside.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        let (kind, data): (u32, Vec<u8>) = match self {
            Notification::Socket { mconsole } => (
                NOTIFY_SOCKET,
                nul_terminated("the socket path", mconsole.as_os_str().as_bytes())?,
            ),
            Notification::Panic { message } => (
                NOTIFY_PANIC,
                nul_terminated("the panic message", message.as_bytes())?,
            ),
            Notification::Hang => (NOTIFY_HANG, Vec::new()),
            Notification::User { data } => (NOTIFY_USER, data.clone()),
        };
        if data.len() > MAX_DATA {
            return Err(WireError::TooLong {
                what: "the notification payload",
                len: data.len(),
                max: MAX_DATA,
            });
        }
        let mut out = Vec::with_capacity(NOTIFY_HEADER + data.len());
        out.extend_from_slice(&MAGIC.to_ne_bytes());
        out.extend_from_slice(&VERSION.to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(&(data.len() as u32).to_ne_bytes());
        out.extend_from_slice(&data);
        Ok(out)
    }
}

fn nul_terminated(what: &'static str, text: &[u8]) -> Result<Vec<u8>, WireError> {
    if text.contains(&0) {
        return Err(WireError::ContainsNul { what });
    }
    let mut out = text.to_vec();
    out.push(0);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply_bytes(err: u32, more: u32, len: u32, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&err.to_ne_bytes());
        out.extend_from_slice(&more.to_ne_bytes());
        out.extend_from_slice(&len.to_ne_bytes());
        out.extend_from_slice(data);
        out
    }

    fn notify_bytes(magic: u32, version: u32, kind: u32, len: u32, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for field in [magic, version, kind, len] {
            out.extend_from_slice(&field.to_ne_bytes());
        }
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn full_request_is_524_bytes_with_the_command_and_nul_padding() {
        let bytes = Request::new(b"version").unwrap().encode();
        assert_eq!(bytes.len(), 524);
        assert_eq!(&bytes[0..4], &0xCAFE_BABEu32.to_ne_bytes());
        assert_eq!(&bytes[4..8], &2u32.to_ne_bytes());
        assert_eq!(&bytes[8..12], &7u32.to_ne_bytes());
        assert_eq!(&bytes[12..19], b"version");
        assert!(bytes[19..].iter().all(|&b| b == 0));
    }

    #[test]
    fn short_request_is_header_plus_command() {
        let bytes = Request::new(b"proc meminfo").unwrap().encode_short();
        assert_eq!(bytes.len(), 12 + 12);
        assert_eq!(&bytes[12..], b"proc meminfo");
    }

    #[test]
    fn requests_round_trip_in_both_forms() {
        for command in [&b""[..], b"help", &[b'x'; 511][..]] {
            let request = Request::new(command).unwrap();
            assert_eq!(Request::parse(&request.encode()).unwrap(), request);
            assert_eq!(Request::parse(&request.encode_short()).unwrap(), request);
        }
    }

    #[test]
    fn a_command_of_512_bytes_is_refused() {
        assert_eq!(
            Request::new(&[b'x'; 512]),
            Err(WireError::TooLong {
                what: "the command",
                len: 512,
                max: 511
            })
        );
    }

    #[test]
    fn malformed_requests_are_rejected() {
        let good = Request::new(b"go").unwrap().encode_short();
        assert!(matches!(
            Request::parse(&good[..11]),
            Err(WireError::TooShort { .. })
        ));
        let mut bad = good.clone();
        bad[0] = 0;
        assert!(matches!(
            Request::parse(&bad),
            Err(WireError::BadMagic { .. })
        ));
        let mut bad = good.clone();
        bad[4..8].copy_from_slice(&1u32.to_ne_bytes());
        assert!(matches!(
            Request::parse(&bad),
            Err(WireError::BadVersion { found: 1, .. })
        ));
        let mut bad = good.clone();
        bad[8..12].copy_from_slice(&3u32.to_ne_bytes());
        assert!(matches!(
            Request::parse(&bad),
            Err(WireError::LengthBeyondDatagram { len: 3, .. })
        ));
        let mut bad = Request::new(b"").unwrap().encode().to_vec();
        bad[8..12].copy_from_slice(&512u32.to_ne_bytes());
        assert!(matches!(
            Request::parse(&bad),
            Err(WireError::LengthTooLarge { len: 512, .. })
        ));
    }

    #[test]
    fn reply_chunks_round_trip() {
        for chunk in [
            ReplyChunk {
                err: 0,
                more: false,
                data: Vec::new(),
            },
            ReplyChunk {
                err: (-19i32) as u32,
                more: false,
                data: b"Device doesn't exist".to_vec(),
            },
            ReplyChunk {
                err: 0,
                more: true,
                data: vec![b'a'; 511],
            },
        ] {
            assert_eq!(ReplyChunk::parse(&chunk.encode().unwrap()).unwrap(), chunk);
        }
    }

    #[test]
    fn reply_text_stops_at_the_nul_and_ignores_trailing_bytes() {
        let chunk = ReplyChunk::parse(&reply_bytes(0, 0, 6, b"ab\0cd\0garbage")).unwrap();
        assert_eq!(chunk.data, b"ab");
        // The full-size form: len says 3, the datagram is 524 bytes.
        let mut full = reply_bytes(0, 0, 3, b"ok\0");
        full.resize(524, 0xAA);
        assert_eq!(ReplyChunk::parse(&full).unwrap().data, b"ok");
    }

    #[test]
    fn reply_without_nul_keeps_all_len_bytes() {
        let chunk = ReplyChunk::parse(&reply_bytes(1, 0, 3, b"abc")).unwrap();
        assert_eq!(chunk.data, b"abc");
        assert_eq!(chunk.err, 1);
    }

    #[test]
    fn malformed_reply_chunks_are_rejected() {
        assert!(matches!(
            ReplyChunk::parse(&[0u8; 11]),
            Err(WireError::TooShort { len: 11, .. })
        ));
        assert!(matches!(
            ReplyChunk::parse(&[]),
            Err(WireError::TooShort { len: 0, .. })
        ));
        assert_eq!(
            ReplyChunk::parse(&reply_bytes(0, 2, 1, b"\0")),
            Err(WireError::BadMore { found: 2 })
        );
        assert!(matches!(
            ReplyChunk::parse(&reply_bytes(0, 0, 5, b"ab\0")),
            Err(WireError::LengthBeyondDatagram {
                len: 5,
                available: 3,
                ..
            })
        ));
        let mut big = reply_bytes(0, 0, 513, &[b'a'; 600]);
        big.push(0);
        assert!(matches!(
            ReplyChunk::parse(&big),
            Err(WireError::LengthTooLarge { len: 513, .. })
        ));
        assert!(matches!(
            ReplyChunk::parse(&reply_bytes(0, 0, u32::MAX, b"")),
            Err(WireError::LengthTooLarge { .. })
        ));
    }

    #[test]
    fn version_zero_text_reply_is_recognised() {
        let raw = b"ERR Version 0 mconsole clients are not supported by this driver\0";
        assert_eq!(
            ReplyChunk::parse(raw),
            Err(WireError::VersionZero(
                "ERR Version 0 mconsole clients are not supported by this driver".into()
            ))
        );
    }

    #[test]
    fn reply_encode_refuses_long_text_and_nul() {
        let long = ReplyChunk {
            err: 0,
            more: false,
            data: vec![b'a'; 512],
        };
        assert!(matches!(long.encode(), Err(WireError::TooLong { .. })));
        let nul = ReplyChunk {
            err: 0,
            more: false,
            data: b"a\0b".to_vec(),
        };
        assert!(matches!(nul.encode(), Err(WireError::ContainsNul { .. })));
    }

    #[test]
    fn the_kernels_socket_notification_parses() {
        // The 39-byte datagram observed from a real 6.1 kernel (uml-spec §1.5).
        let path = b"/root/.uml/t1/mconsole\0";
        let bytes = notify_bytes(MAGIC, 2, 0, path.len() as u32, path);
        assert_eq!(bytes.len(), 39);
        assert_eq!(
            Notification::parse(&bytes).unwrap(),
            Notification::Socket {
                mconsole: PathBuf::from("/root/.uml/t1/mconsole")
            }
        );
    }

    #[test]
    fn notifications_round_trip() {
        for n in [
            Notification::Socket {
                mconsole: PathBuf::from("/tmp/u/x/mconsole"),
            },
            Notification::Panic {
                message: "Attempted to kill init! exitcode=0x00000300".into(),
            },
            Notification::Hang,
            Notification::User {
                data: b"hi\n\0\xff".to_vec(),
            },
            Notification::User { data: vec![7; 512] },
            Notification::User { data: Vec::new() },
        ] {
            assert_eq!(Notification::parse(&n.encode().unwrap()).unwrap(), n);
        }
    }

    #[test]
    fn user_notification_keeps_bytes_exactly() {
        let bytes = notify_bytes(MAGIC, 2, 3, 3, b"hi\n");
        assert_eq!(
            Notification::parse(&bytes).unwrap(),
            Notification::User {
                data: b"hi\n".to_vec()
            }
        );
    }

    #[test]
    fn malformed_notifications_are_rejected() {
        assert!(matches!(
            Notification::parse(&[0u8; 15]),
            Err(WireError::TooShort { .. })
        ));
        assert!(matches!(
            Notification::parse(&notify_bytes(0xDEAD_BEEF, 2, 0, 0, b"")),
            Err(WireError::BadMagic {
                found: 0xDEAD_BEEF,
                ..
            })
        ));
        assert!(matches!(
            Notification::parse(&notify_bytes(MAGIC, 1, 0, 0, b"")),
            Err(WireError::BadVersion { found: 1, .. })
        ));
        assert_eq!(
            Notification::parse(&notify_bytes(MAGIC, 2, 4, 0, b"")),
            Err(WireError::BadType { found: 4 })
        );
        assert!(matches!(
            Notification::parse(&notify_bytes(MAGIC, 2, 3, 4, b"abc")),
            Err(WireError::LengthBeyondDatagram { len: 4, .. })
        ));
        assert!(matches!(
            Notification::parse(&notify_bytes(MAGIC, 2, 3, 513, &[0; 513])),
            Err(WireError::LengthTooLarge { len: 513, .. })
        ));
    }

    #[test]
    fn notification_encode_refuses_oversized_payloads() {
        let n = Notification::User { data: vec![0; 513] };
        assert!(matches!(n.encode(), Err(WireError::TooLong { .. })));
        // 511 characters + NUL fit, 512 do not.
        let ok = Notification::Panic {
            message: "p".repeat(511),
        };
        assert!(ok.encode().is_ok());
        let too_long = Notification::Panic {
            message: "p".repeat(512),
        };
        assert!(matches!(too_long.encode(), Err(WireError::TooLong { .. })));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_datagrams_never_panic_and_parsed_values_round_trip(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
            header in proptest::prelude::any::<[u32; 4]>(),
        ) {
            // Half random bytes, half a plausible header in front of random bytes, so the
            // length checks are reached too.
            let mut framed: Vec<u8> = Vec::new();
            for (i, field) in header.iter().enumerate() {
                let field = match i {
                    0 => if field % 2 == 0 { MAGIC } else { *field },
                    1 => if field % 2 == 0 { VERSION } else { *field },
                    _ => field % 700,
                };
                framed.extend_from_slice(&field.to_ne_bytes());
            }
            framed.extend_from_slice(&data);
            for bytes in [&data[..], &framed[..], &framed[4..]] {
                if let Ok(chunk) = ReplyChunk::parse(bytes)
                    && let Ok(again) = chunk.encode()
                {
                    proptest::prop_assert_eq!(ReplyChunk::parse(&again), Ok(chunk));
                }
                if let Ok(n) = Notification::parse(bytes)
                    && let Ok(again) = n.encode()
                {
                    proptest::prop_assert_eq!(Notification::parse(&again), Ok(n));
                }
                if let Ok(r) = Request::parse(bytes) {
                    proptest::prop_assert_eq!(Request::parse(&r.encode()), Ok(r));
                }
            }
        }
    }

    #[test]
    fn uml_watchdogs_hang_with_version_zero_is_accepted() {
        // What /usr/bin/uml_watchdog sends: magic, version left at 0, MCONSOLE_HANG, len 0.
        let mut d = Vec::new();
        for field in [MAGIC, 0, NOTIFY_HANG, 0] {
            d.extend_from_slice(&field.to_ne_bytes());
        }
        assert_eq!(Notification::parse(&d).unwrap(), Notification::Hang);
        let mut user = d.clone();
        user[8..12].copy_from_slice(&NOTIFY_USER.to_ne_bytes());
        assert!(matches!(
            Notification::parse(&user),
            Err(WireError::BadVersion { found: 0, .. })
        ));
    }
}
