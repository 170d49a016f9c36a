//! The L2TPv3 data header of the UML vector driver's `l2tpv3` transport, over UDP
//! (`vector_transports.c`: `l2tpv3_form_header`, `l2tpv3_verify_header`; RFC 3931 §4.1.2.1):
//!
//! ```text
//! 00 03 00 00            UDP only: T bit 0, version 3 (L2TPV3_DATA_PACKET, vector_user.h)
//! session (4, BE)        the receiver's rx_session
//! cookie (0, 4 or 8)     when rx_cookie/tx_cookie are set; 8 with cookie64=1
//! counter (0 or 4, BE)   when counter=1 (0 with pin_counter=1)
//! Ethernet frame
//! ```
//!
//! The kernel checks the cookie and the session of what it receives, and nothing else; so
//! does [`Codec::decode`].

/// `0x30000`, big-endian: a data message of L2TP version 3 (vector_user.h).
const DATA_PACKET: [u8; 4] = [0x00, 0x03, 0x00, 0x00];

/// One direction pair of an L2TPv3-over-UDP session, from the keys of a `--net l2tpv3:` spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Codec {
    tx_session: u32,
    rx_session: u32,
    /// (tx, rx, 64-bit)
    cookie: Option<(u64, u64, bool)>,
    /// `Some(pinned)` when the header has a counter.
    counter: Option<bool>,
    sent: u32,
}

/// Why a set of keys cannot be served by [`Codec`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("only l2tpv3 over UDP (udp=1) can be relayed; raw IP needs a raw socket")]
    NotUdp,
    #[error("`{key}` is missing or not a number")]
    Key { key: &'static str },
}

fn number(keys: &[(String, String)], key: &str) -> Option<u64> {
    let v = keys
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())?;
    match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

impl Codec {
    /// From the kernel keys of a tunnel ([`super::Tunnel::keys`]), as this end's peer would use
    /// them: what the guest sends with `tx_*` arrives here, and is checked against `rx_*`.
    ///
    /// # Errors
    /// [`CodecError`] when the keys are not a UDP session with both session numbers.
    pub fn from_keys(keys: &[(String, String)]) -> Result<Codec, CodecError> {
        if number(keys, "udp") != Some(1) {
            return Err(CodecError::NotUdp);
        }
        let session = |key: &'static str| {
            number(keys, key)
                .and_then(|n| u32::try_from(n).ok())
                .ok_or(CodecError::Key { key })
        };
        let cookie = match (number(keys, "tx_cookie"), number(keys, "rx_cookie")) {
            (Some(tx), Some(rx)) => Some((tx, rx, number(keys, "cookie64") == Some(1))),
            _ => None,
        };
        Ok(Codec {
            tx_session: session("tx_session")?,
            rx_session: session("rx_session")?,
            cookie,
            counter: (number(keys, "counter") == Some(1))
                .then(|| number(keys, "pin_counter") == Some(1)),
            sent: 0,
        })
    }

    /// Appends the datagram that carries `frame` to `out`.
    pub fn encode(&mut self, frame: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(&DATA_PACKET);
        out.extend_from_slice(&self.tx_session.to_be_bytes());
        match self.cookie {
            Some((tx, _, true)) => out.extend_from_slice(&tx.to_be_bytes()),
            Some((tx, _, false)) => out.extend_from_slice(&(tx as u32).to_be_bytes()),
            None => {}
        }
        match self.counter {
            Some(true) => out.extend_from_slice(&[0; 4]),
            Some(false) => {
                self.sent = self.sent.wrapping_add(1);
                out.extend_from_slice(&self.sent.to_be_bytes());
            }
            None => {}
        }
        out.extend_from_slice(frame);
    }

    /// The Ethernet frame in `datagram`, or `None` when its session or cookie is not ours or it
    /// is shorter than the header.
    pub fn decode<'a>(&self, datagram: &'a [u8]) -> Option<&'a [u8]> {
        let session = datagram.get(4..8)?;
        if session != self.rx_session.to_be_bytes() {
            return None;
        }
        let mut at = 8;
        if let Some((_, rx, wide)) = self.cookie {
            let len = if wide { 8 } else { 4 };
            let cookie = datagram.get(at..at + len)?;
            let expected = if wide {
                rx.to_be_bytes().to_vec()
            } else {
                (rx as u32).to_be_bytes().to_vec()
            };
            if cookie != expected.as_slice() {
                return None;
            }
            at += len;
        }
        if self.counter.is_some() {
            at += 4;
        }
        datagram.get(at..)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(s: &[(&str, &str)]) -> Vec<(String, String)> {
        s.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
    }

    #[test]
    fn header_is_the_kernels() {
        let mut c = Codec::from_keys(&keys(&[
            ("udp", "1"),
            ("rx_session", "7"),
            ("tx_session", "0x0102"),
        ]))
        .unwrap();
        let mut out = Vec::new();
        c.encode(b"frame", &mut out);
        assert_eq!(out, b"\x00\x03\x00\x00\x00\x00\x01\x02frame");
        // What the peer sends us carries our rx_session.
        assert_eq!(
            c.decode(b"\x00\x03\x00\x00\x00\x00\x00\x07frame"),
            Some(&b"frame"[..])
        );
        assert_eq!(c.decode(b"\x00\x03\x00\x00\x00\x00\x00\x08frame"), None);
        assert_eq!(c.decode(b"\x00\x03"), None);
    }

    #[test]
    fn cookies_and_counters_round_trip() {
        for (wide, pin) in [(false, false), (true, true), (true, false)] {
            let k = keys(&[
                ("udp", "1"),
                ("rx_session", "5"),
                ("tx_session", "5"),
                ("rx_cookie", "99"),
                ("tx_cookie", "99"),
                ("cookie64", if wide { "1" } else { "0" }),
                ("counter", "1"),
                ("pin_counter", if pin { "1" } else { "0" }),
            ]);
            let mut c = Codec::from_keys(&k).unwrap();
            let mut out = Vec::new();
            c.encode(b"abc", &mut out);
            assert_eq!(out.len(), 8 + if wide { 8 } else { 4 } + 4 + 3);
            assert_eq!(c.decode(&out), Some(&b"abc"[..]));
            let mut bad = out.clone();
            bad[9] ^= 1;
            assert_eq!(c.decode(&bad), None, "a wrong cookie is dropped");
        }
    }

    #[test]
    fn raw_ip_sessions_are_refused() {
        let k = keys(&[("udp", "0"), ("rx_session", "1"), ("tx_session", "1")]);
        assert_eq!(Codec::from_keys(&k), Err(CodecError::NotUdp));
    }
}
