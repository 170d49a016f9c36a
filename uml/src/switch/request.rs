//! The `daemon` transport's control-stream wire format: the port request a client writes
//! after connecting to the control socket (v0, v1 and v3; v2 was never used by a kernel), the
//! 110-byte `sockaddr_un` both sides exchange, and the reply.
//!
//! Layouts (host-endian, as `arch/um/drivers/daemon_user.c` and uml_switch's `uml_switch.c`
//! lay out their C structs on x86_64):
//!
//! | version | bytes | layout |
//! |---|---|---|
//! | v3 | 124 | magic `0xFEEDFACE` u32, version 3 u32, type u32 (0), `sockaddr_un` (110), 2 padding |
//! | v1 | 124 | magic u32, type u32 (0), MAC (6), `sockaddr_un` (110) |
//! | v0 | 120 | type u32 (0), MAC (6), `sockaddr_un` (110) |
//!
//! A v1 request is recognised by the magic followed by a zero word (its `type` field sits where
//! v3 has its version). Packed v3 clients (VDE's) send 122 bytes without the tail padding; they
//! are accepted too. Parsing never panics and never needs more than [`MAX_REQUEST_LEN`] bytes.

use crate::bytes::{ne_u16, ne_u32};
use thiserror::Error;

/// `SWITCH_MAGIC` of `daemon_user.c` and `uml_switch.c`.
pub const SWITCH_MAGIC: u32 = 0xFEED_FACE;
/// The request version the kernel sends.
pub const CURRENT_VERSION: u32 = 3;
/// `REQ_NEW_CONTROL`, the only request type there is.
pub const REQ_NEW_CONTROL: u32 = 0;
/// Size of a `struct sockaddr_un` on Linux: family (2) + path (108).
pub const SOCKADDR_LEN: usize = 110;
/// Size of `sun_path`.
pub const SUN_PATH_LEN: usize = 108;
/// Size of `struct request_v3` as the kernel writes it (with tail padding).
pub const REQUEST_V3_LEN: usize = 124;
/// The v3 request without its tail padding, as packed clients send it.
pub const REQUEST_V3_PACKED_LEN: usize = 122;
/// Size of `struct request_v1`.
pub const REQUEST_V1_LEN: usize = 124;
/// Size of `struct request_v0`.
pub const REQUEST_V0_LEN: usize = 120;
/// The most a request can be (uml_switch reads `sizeof(union request)`).
pub const MAX_REQUEST_LEN: usize = 124;
/// The reply is the switch's data-socket `sockaddr_un`, exactly this long (the kernel rejects
/// any other length, `daemon_user.c`).
pub const REPLY_LEN: usize = SOCKADDR_LEN;

const AF_UNIX_FAMILY: u16 = 1;

/// An `AF_UNIX` datagram address as the `daemon` transport uses it: all 108 bytes of
/// `sun_path`, always bound and addressed with the full 110-byte length.
///
/// The kernel's abstract name is `{0, pad[3], pid, tv_usec}` followed by 96 uninitialised
/// bytes (`daemon_user.c`), so every byte is significant and compared.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerAddr {
    path: [u8; SUN_PATH_LEN],
}

impl std::fmt::Debug for PeerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PeerAddr({})", self.describe())
    }
}

impl PeerAddr {
    /// An address from the raw 108 bytes of `sun_path`.
    pub fn from_path_bytes(path: [u8; SUN_PATH_LEN]) -> Self {
        PeerAddr { path }
    }

    /// The abstract address that `daemon_user.c` and uml_switch build:
    /// `{0, pad[3], pid, usec}` and zeros after.
    pub fn abstract_from_pid(pid: u32, usec: u32) -> Self {
        let mut path = [0u8; SUN_PATH_LEN];
        path[4..8].copy_from_slice(&pid.to_ne_bytes());
        path[8..12].copy_from_slice(&usec.to_ne_bytes());
        PeerAddr { path }
    }

    /// Parse a 110-byte `sockaddr_un`; the family must be `AF_UNIX`.
    pub fn from_sockaddr(bytes: &[u8]) -> Result<Self, RequestError> {
        let family = ne_u16(bytes, 0).ok_or(RequestError::Truncated {
            got: bytes.len(),
            need: SOCKADDR_LEN,
        })?;
        if family != AF_UNIX_FAMILY {
            return Err(RequestError::BadFamily(family));
        }
        let path: [u8; SUN_PATH_LEN] = bytes
            .get(2..SOCKADDR_LEN)
            .and_then(|p| p.try_into().ok())
            .ok_or(RequestError::Truncated {
            got: bytes.len(),
            need: SOCKADDR_LEN,
        })?;
        Ok(PeerAddr { path })
    }

    /// The 110-byte `sockaddr_un` (family `AF_UNIX` + the whole path).
    pub fn to_sockaddr(&self) -> [u8; SOCKADDR_LEN] {
        let mut out = [0u8; SOCKADDR_LEN];
        out[..2].copy_from_slice(&AF_UNIX_FAMILY.to_ne_bytes());
        out[2..].copy_from_slice(&self.path);
        out
    }

    pub fn path_bytes(&self) -> &[u8; SUN_PATH_LEN] {
        &self.path
    }

    /// Whether this is an abstract name (first byte 0) rather than a filesystem path.
    pub fn is_abstract(&self) -> bool {
        self.path[0] == 0
    }

    /// A short human-readable form for logs: `@pid=N,usec=N` for the kernel's abstract
    /// names, the path for filesystem names.
    pub fn describe(&self) -> String {
        if self.is_abstract() {
            let pid = ne_u32(&self.path, 4).unwrap_or(0);
            let usec = ne_u32(&self.path, 8).unwrap_or(0);
            format!("@pid={pid},usec={usec}")
        } else {
            let end = self
                .path
                .iter()
                .position(|&b| b == 0)
                .unwrap_or(SUN_PATH_LEN);
            String::from_utf8_lossy(&self.path[..end]).into_owned()
        }
    }
}

/// Which request layout a client used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestVersion {
    /// No magic: type, MAC, address. uml_switch sends no reply to these clients.
    V0,
    /// Magic, type, MAC, address.
    V1,
    /// Magic, version 3, type, address: what the 6.1 kernel sends.
    V3,
}

/// A decoded port request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub version: RequestVersion,
    /// The MAC address v0 and v1 clients announce (uml_switch ignores it, and so do we).
    pub mac: Option<[u8; 6]>,
    /// Where the client receives its frames.
    pub addr: PeerAddr,
}

impl Request {
    /// Whether the client expects the switch's data address as a reply (v1 and v3 do).
    pub fn wants_reply(&self) -> bool {
        !matches!(self.version, RequestVersion::V0)
    }

    /// The request in its wire form (124 bytes for v1/v3, 120 for v0).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAX_REQUEST_LEN);
        let mac = self.mac.unwrap_or([0; 6]);
        match self.version {
            RequestVersion::V3 => {
                out.extend_from_slice(&SWITCH_MAGIC.to_ne_bytes());
                out.extend_from_slice(&CURRENT_VERSION.to_ne_bytes());
                out.extend_from_slice(&REQ_NEW_CONTROL.to_ne_bytes());
                out.extend_from_slice(&self.addr.to_sockaddr());
                out.extend_from_slice(&[0, 0]);
            }
            RequestVersion::V1 => {
                out.extend_from_slice(&SWITCH_MAGIC.to_ne_bytes());
                out.extend_from_slice(&REQ_NEW_CONTROL.to_ne_bytes());
                out.extend_from_slice(&mac);
                out.extend_from_slice(&self.addr.to_sockaddr());
            }
            RequestVersion::V0 => {
                out.extend_from_slice(&REQ_NEW_CONTROL.to_ne_bytes());
                out.extend_from_slice(&mac);
                out.extend_from_slice(&self.addr.to_sockaddr());
            }
        }
        out
    }
}

/// The v3 request for `addr`, exactly as the kernel writes it (124 bytes).
pub fn encode_v3(addr: &PeerAddr) -> [u8; REQUEST_V3_LEN] {
    let mut out = [0u8; REQUEST_V3_LEN];
    out[0..4].copy_from_slice(&SWITCH_MAGIC.to_ne_bytes());
    out[4..8].copy_from_slice(&CURRENT_VERSION.to_ne_bytes());
    out[8..12].copy_from_slice(&REQ_NEW_CONTROL.to_ne_bytes());
    out[12..12 + SOCKADDR_LEN].copy_from_slice(&addr.to_sockaddr());
    out
}

/// What the bytes received so far on a new control connection amount to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse {
    /// A complete request, which took `len` bytes of the input.
    Complete { request: Request, len: usize },
    /// Not enough bytes yet: at least `need` in total are required.
    Incomplete { need: usize },
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RequestError {
    #[error("request version 2 is not supported (versions 0, 1 and 3 are)")]
    Version2,
    #[error("request version {0} is not supported (versions 0, 1 and 3 are)")]
    UnsupportedVersion(u32),
    #[error("request type {0} is unknown (only 0, REQ_NEW_CONTROL, exists)")]
    BadType(u32),
    #[error("the data address has family {0}, not AF_UNIX (1)")]
    BadFamily(u16),
    #[error("the request is {got} bytes long, but {need} are needed")]
    Truncated { got: usize, need: usize },
}

/// Decode the start of a control stream.
///
/// Returns [`Parse::Incomplete`] while more bytes could still make a valid request, so a
/// caller can keep reading (with a deadline). Bytes after a complete request are not looked at.
///
/// # Errors
/// A request that can never become valid: version 2 or above 3, a type other than
/// `REQ_NEW_CONTROL`, or an address family other than `AF_UNIX`.
pub fn parse(buf: &[u8]) -> Result<Parse, RequestError> {
    let Some(first) = ne_u32(buf, 0) else {
        return Ok(Parse::Incomplete { need: 4 });
    };
    if first != SWITCH_MAGIC {
        // v0: the first word is the type.
        if first != REQ_NEW_CONTROL {
            return Err(RequestError::BadType(first));
        }
        return finish(buf, REQUEST_V0_LEN, |b| {
            Ok(Request {
                version: RequestVersion::V0,
                mac: Some(mac_at(b, 4)),
                addr: PeerAddr::from_sockaddr(&b[10..REQUEST_V0_LEN])?,
            })
        });
    }
    let Some(second) = ne_u32(buf, 4) else {
        return Ok(Parse::Incomplete { need: 8 });
    };
    match second {
        // v1's second word is its type, REQ_NEW_CONTROL (uml_switch.c treats it this way).
        0 => finish(buf, REQUEST_V1_LEN, |b| {
            Ok(Request {
                version: RequestVersion::V1,
                mac: Some(mac_at(b, 8)),
                addr: PeerAddr::from_sockaddr(&b[14..REQUEST_V1_LEN])?,
            })
        }),
        2 => Err(RequestError::Version2),
        3 => {
            if let Some(kind) = ne_u32(buf, 8)
                && kind != REQ_NEW_CONTROL
            {
                return Err(RequestError::BadType(kind));
            }
            let parsed = finish(buf, REQUEST_V3_PACKED_LEN, |b| {
                Ok(Request {
                    version: RequestVersion::V3,
                    mac: None,
                    addr: PeerAddr::from_sockaddr(&b[12..12 + SOCKADDR_LEN])?,
                })
            })?;
            // Take the tail padding too when it came with the request.
            Ok(match parsed {
                Parse::Complete { request, .. } => Parse::Complete {
                    request,
                    len: buf.len().min(REQUEST_V3_LEN),
                },
                other => other,
            })
        }
        other => Err(RequestError::UnsupportedVersion(other)),
    }
}

fn finish(
    buf: &[u8],
    len: usize,
    decode: impl FnOnce(&[u8]) -> Result<Request, RequestError>,
) -> Result<Parse, RequestError> {
    if buf.len() < len {
        return Ok(Parse::Incomplete { need: len });
    }
    let request = decode(&buf[..len])?;
    Ok(Parse::Complete { request, len })
}

fn mac_at(buf: &[u8], off: usize) -> [u8; 6] {
    buf.get(off..off + 6)
        .and_then(|m| m.try_into().ok())
        .unwrap_or([0; 6])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn kernel_like_addr() -> PeerAddr {
        let mut path = [0xA5u8; SUN_PATH_LEN];
        path[0] = 0;
        path[4..8].copy_from_slice(&0x5929u32.to_ne_bytes());
        PeerAddr::from_path_bytes(path)
    }

    #[test]
    fn v3_encoding_matches_the_bytes_the_kernel_writes() {
        // Captured from the 6.1 kernel (pid 0x403) with a fake switch. The address's pid sits
        // at sun_path[4..8]: the kernel's `struct { char zero; int pid; int usecs; }` has three
        // padding bytes after `zero`. (uml-spec §4.1's sample dump drops two of the zero bytes.)
        let addr = PeerAddr::abstract_from_pid(0x403, 0x0f0a43);
        let req = encode_v3(&addr);
        assert_eq!(req.len(), 124);
        let captured = "cefaedfe030000000000000001000000000003040000430a0f000000";
        let hex: String = req[..28].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, captured);
        assert_eq!(addr.describe(), "@pid=1027,usec=985667");
    }

    #[test]
    fn every_version_round_trips_with_all_108_address_bytes() {
        for version in [RequestVersion::V0, RequestVersion::V1, RequestVersion::V3] {
            let request = Request {
                version,
                mac: (version != RequestVersion::V3).then_some([0xfe, 0xfd, 1, 2, 3, 4]),
                addr: kernel_like_addr(),
            };
            let bytes = request.encode();
            assert_eq!(
                parse(&bytes).unwrap(),
                Parse::Complete {
                    request,
                    len: bytes.len()
                }
            );
        }
    }

    #[test]
    fn packed_v3_without_tail_padding_is_accepted() {
        let bytes = encode_v3(&kernel_like_addr());
        let Parse::Complete { len, .. } = parse(&bytes[..122]).unwrap() else {
            panic!("122 bytes should be a complete packed v3 request");
        };
        assert_eq!(len, 122);
    }

    #[test]
    fn short_requests_ask_for_more() {
        let bytes = encode_v3(&kernel_like_addr());
        assert_eq!(parse(&bytes[..2]).unwrap(), Parse::Incomplete { need: 4 });
        assert_eq!(parse(&bytes[..6]).unwrap(), Parse::Incomplete { need: 8 });
        assert_eq!(
            parse(&bytes[..60]).unwrap(),
            Parse::Incomplete { need: 122 }
        );
    }

    #[test]
    fn version_2_and_unknown_versions_are_refused() {
        let mut bytes = encode_v3(&kernel_like_addr());
        bytes[4..8].copy_from_slice(&2u32.to_ne_bytes());
        assert_eq!(parse(&bytes), Err(RequestError::Version2));
        bytes[4..8].copy_from_slice(&7u32.to_ne_bytes());
        assert_eq!(parse(&bytes), Err(RequestError::UnsupportedVersion(7)));
    }

    #[test]
    fn wrong_magic_with_nonzero_type_and_wrong_family_are_refused() {
        assert_eq!(
            parse(&[1, 2, 3, 4, 5]),
            Err(RequestError::BadType(0x0403_0201))
        );
        let mut bytes = encode_v3(&kernel_like_addr());
        bytes[12] = 2;
        assert_eq!(parse(&bytes), Err(RequestError::BadFamily(2)));
    }

    proptest! {
        #[test]
        fn parsing_arbitrary_bytes_never_panics_and_stays_in_bounds(
            bytes in proptest::collection::vec(any::<u8>(), 0..300)
        ) {
            if let Ok(Parse::Complete { len, .. }) = parse(&bytes) {
                prop_assert!(len <= bytes.len() && len <= MAX_REQUEST_LEN);
            }
        }
    }
}
