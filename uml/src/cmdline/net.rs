//! Network devices: `eth<n>=<transport>,…` with its MAC field (`net_kern.c`) and
//! `vec<n>:<key>=<value>,…` (`vector_kern.c`).

use std::fmt;
use std::path::PathBuf;

use super::number::strtoul0;
use super::{Arg, ParseError};
use crate::options;

/// A MAC address field, kept as written: the kernel does not reject a bad one but picks a
/// random address, so it is checked ([`Mac::bytes`]) rather than refused while parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mac(String);

impl Mac {
    /// The usual `xx:xx:xx:xx:xx:xx` form.
    pub fn new(bytes: [u8; 6]) -> Mac {
        let [a, b, c, d, e, g] = bytes;
        Mac(format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}"))
    }

    /// Text as it appears on the command line (not checked).
    pub fn from_text(text: impl Into<String>) -> Mac {
        Mac(text.into())
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The six bytes as the kernel reads them (`setup_etheraddr`, `net_kern.c`: six base-16
    /// numbers separated by `:`), or `None` if it cannot.
    pub fn bytes(&self) -> Option<[u8; 6]> {
        let mut out = [0u8; 6];
        let mut parts = self.0.split(':');
        for byte in &mut out {
            let part = parts.next()?;
            if part.is_empty() || part.len() > 2 || !part.bytes().all(|c| c.is_ascii_hexdigit()) {
                return None;
            }
            *byte = u8::from_str_radix(part, 16).ok()?;
        }
        parts.next().is_none().then_some(out)
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An `eth` transport with its positional fields. `None` is an empty field (the kernel's
/// default); trailing empty fields are not rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// `ethertap,<dev>,<mac>,<gate>`.
    Ethertap {
        dev: Option<String>,
        mac: Option<Mac>,
        gate: Option<String>,
    },
    /// `tuntap,<dev>,<mac>,<gate>`.
    Tuntap {
        dev: Option<String>,
        mac: Option<Mac>,
        gate: Option<String>,
    },
    /// `daemon,<mac>,<sock type>,<ctl socket>`.
    Daemon {
        mac: Option<Mac>,
        sock_type: Option<String>,
        ctl: Option<PathBuf>,
    },
    /// `mcast,<mac>,<group>,<port>,<ttl>`.
    Mcast {
        mac: Option<Mac>,
        group: Option<String>,
        port: Option<String>,
        ttl: Option<String>,
    },
    /// `ucast,<mac>,<remote>,<listen port>,<remote port>`.
    Ucast {
        mac: Option<Mac>,
        remote: Option<String>,
        listen_port: Option<String>,
        remote_port: Option<String>,
    },
    /// `slirp,<mac>,<program>[,<arg>…]`.
    Slirp { mac: Option<Mac>, argv: Vec<String> },
    /// `slip,<gate>`.
    Slip { gate: Option<String> },
    /// `vde,<switch>,<mac>,<port>,<group>,<mode>,<description>`.
    Vde {
        switch: Option<PathBuf>,
        mac: Option<Mac>,
        port: Option<String>,
        group: Option<String>,
        mode: Option<String>,
        description: Option<String>,
    },
    /// A transport the kernel does not have (a typo, or `pcap`, which Debian's 6.1 lacks):
    /// the kernel ignores the whole option without a message.
    Other { name: String, fields: Vec<String> },
}

impl Transport {
    /// `daemon,,unix,<ctl>`: a switch at control socket `ctl` with a random MAC.
    pub fn daemon(ctl: impl Into<PathBuf>) -> Transport {
        Transport::Daemon {
            mac: None,
            sock_type: Some("unix".into()),
            ctl: Some(ctl.into()),
        }
    }

    /// The transport name.
    pub fn name(&self) -> &str {
        match self {
            Transport::Ethertap { .. } => "ethertap",
            Transport::Tuntap { .. } => "tuntap",
            Transport::Daemon { .. } => "daemon",
            Transport::Mcast { .. } => "mcast",
            Transport::Ucast { .. } => "ucast",
            Transport::Slirp { .. } => "slirp",
            Transport::Slip { .. } => "slip",
            Transport::Vde { .. } => "vde",
            Transport::Other { name, .. } => name,
        }
    }

    /// The MAC field, if the transport has one and it is not empty.
    pub fn mac(&self) -> Option<&Mac> {
        match self {
            Transport::Ethertap { mac, .. }
            | Transport::Tuntap { mac, .. }
            | Transport::Daemon { mac, .. }
            | Transport::Mcast { mac, .. }
            | Transport::Ucast { mac, .. }
            | Transport::Slirp { mac, .. }
            | Transport::Vde { mac, .. } => mac.as_ref(),
            Transport::Slip { .. } | Transport::Other { .. } => None,
        }
    }

    fn fields(&self) -> Vec<Option<String>> {
        fn s(v: &Option<String>) -> Option<String> {
            v.clone()
        }
        fn m(v: &Option<Mac>) -> Option<String> {
            v.as_ref().map(|m| m.0.clone())
        }
        fn p(v: &Option<PathBuf>) -> Option<String> {
            v.as_ref().map(|p| p.display().to_string())
        }
        match self {
            Transport::Ethertap { dev, mac, gate } | Transport::Tuntap { dev, mac, gate } => {
                vec![s(dev), m(mac), s(gate)]
            }
            Transport::Daemon {
                mac,
                sock_type,
                ctl,
            } => vec![m(mac), s(sock_type), p(ctl)],
            Transport::Mcast {
                mac,
                group,
                port,
                ttl,
            } => vec![m(mac), s(group), s(port), s(ttl)],
            Transport::Ucast {
                mac,
                remote,
                listen_port,
                remote_port,
            } => vec![m(mac), s(remote), s(listen_port), s(remote_port)],
            Transport::Slirp { mac, argv } => std::iter::once(m(mac))
                .chain(argv.iter().map(|a| Some(a.clone())))
                .collect(),
            Transport::Slip { gate } => vec![s(gate)],
            Transport::Vde {
                switch,
                mac,
                port,
                group,
                mode,
                description,
            } => vec![
                p(switch),
                m(mac),
                s(port),
                s(group),
                s(mode),
                s(description),
            ],
            Transport::Other { fields, .. } => fields.iter().map(|f| Some(f.clone())).collect(),
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())?;
        let fields = self.fields();
        let keep = if let Transport::Slirp { mac, argv } = self {
            if argv.is_empty() {
                usize::from(mac.is_some())
            } else {
                fields.len()
            }
        } else if matches!(self, Transport::Other { .. }) {
            fields.len()
        } else {
            fields
                .iter()
                .rposition(Option::is_some)
                .map_or(0, |i| i + 1)
        };
        for field in fields.iter().take(keep) {
            write!(f, ",{}", field.as_deref().unwrap_or(""))?;
        }
        Ok(())
    }
}
pub(super) fn parse_eth(rest: &str) -> Result<Arg, ParseError> {
    // eth_parse(), net_kern.c.
    let (unit, used) = strtoul0(rest).ok_or_else(|| ParseError::EthUnit(rest.into()))?;
    let Some(spec) = rest.get(used..).and_then(|r| r.strip_prefix('=')) else {
        return Err(ParseError::EthEquals(rest.into()));
    };
    let mut parts = spec.split(',');
    let name = parts.next().unwrap_or("");
    let fields: Vec<&str> = parts.collect();
    let transport = parse_transport(name, &fields)?;
    Ok(Arg::Eth { unit, transport })
}

fn parse_transport(name: &str, fields: &[&str]) -> Result<Transport, ParseError> {
    // The grammar is the transport's whatever the kernel: whether a kernel has it is the
    // checker's question (TransportSpec::kernels), not the parser's.
    let Some(spec) = options::transport(name) else {
        return Ok(Transport::Other {
            name: name.into(),
            fields: fields.iter().map(|f| (*f).to_owned()).collect(),
        });
    };
    let max = spec.fields().len();
    if name != "slirp" && fields.len() > max {
        return Err(if spec.ignores_extra_fields() {
            ParseError::IgnoredFields {
                transport: spec.name(),
                max,
                ignored: fields.len() - max,
            }
        } else {
            ParseError::ExtraFields {
                transport: spec.name(),
                max,
                given: fields.len(),
            }
        });
    }
    let get = |i: usize| {
        fields
            .get(i)
            .filter(|f| !f.is_empty())
            .map(|f| (*f).to_owned())
    };
    let mac = |i: usize| get(i).map(Mac);
    let path = |i: usize| get(i).map(PathBuf::from);
    Ok(match name {
        "ethertap" => Transport::Ethertap {
            dev: get(0),
            mac: mac(1),
            gate: get(2),
        },
        "tuntap" => Transport::Tuntap {
            dev: get(0),
            mac: mac(1),
            gate: get(2),
        },
        "daemon" => Transport::Daemon {
            mac: mac(0),
            sock_type: get(1),
            ctl: path(2),
        },
        "mcast" => Transport::Mcast {
            mac: mac(0),
            group: get(1),
            port: get(2),
            ttl: get(3),
        },
        "ucast" => Transport::Ucast {
            mac: mac(0),
            remote: get(1),
            listen_port: get(2),
            remote_port: get(3),
        },
        "slirp" => Transport::Slirp {
            mac: mac(0),
            argv: fields.iter().skip(1).map(|f| (*f).to_owned()).collect(),
        },
        "slip" => Transport::Slip { gate: get(0) },
        "vde" => Transport::Vde {
            switch: path(0),
            mac: mac(1),
            port: get(2),
            group: get(3),
            mode: get(4),
            description: get(5),
        },
        _ => Transport::Other {
            name: name.into(),
            fields: fields.iter().map(|f| (*f).to_owned()).collect(),
        },
    })
}

pub(super) fn parse_vec(rest: &str) -> Result<Arg, ParseError> {
    // vector_parse(), vector_kern.c: kstrtouint(…, 0) over the text before `:`.
    let Some((number, spec)) = rest.split_once(':') else {
        return Err(ParseError::VecColon(rest.into()));
    };
    let unit = match strtoul0(number) {
        Some((n, used)) if used == number.len() && n <= u64::from(u32::MAX) => n,
        _ => return Err(ParseError::VecUnit(number.into())),
    };
    let mut pairs = Vec::new();
    if !spec.is_empty() {
        for pair in spec.split(',') {
            let Some((k, v)) = pair.split_once('=') else {
                return Err(ParseError::VecKeyWithoutValue(pair.into()));
            };
            if v.contains('=') {
                return Err(ParseError::VecDoubleEquals(pair.into()));
            }
            pairs.push((k.to_owned(), v.to_owned()));
        }
    }
    Ok(Arg::Vec { unit, pairs })
}

#[cfg(test)]
mod tests {
    use super::super::tests::one;
    use super::*;

    #[test]
    fn eth_transports_and_fields() {
        assert_eq!(
            one("eth0=daemon,,unix,/tmp/s.ctl"),
            Arg::Eth {
                unit: 0,
                transport: Transport::daemon("/tmp/s.ctl")
            }
        );
        assert!(matches!(
            one("eth1=pcap,eth0"),
            Arg::Eth {
                transport: Transport::Other { .. },
                ..
            }
        ));
        assert!(matches!(
            one("eth1=tuntap,tap0,,,x"),
            Arg::Invalid {
                error: ParseError::ExtraFields {
                    max: 3,
                    given: 4,
                    ..
                },
                ..
            }
        ));
        assert!(matches!(
            one("eth1=daemon,,unix,/c,/d"),
            Arg::Invalid {
                error: ParseError::IgnoredFields { .. },
                ..
            }
        ));
        assert!(matches!(
            one("eth0=slirp,,slirp,-P,x"),
            Arg::Eth {
                transport: Transport::Slirp { .. },
                ..
            }
        ));
        assert!(matches!(one("ethX=tuntap"), Arg::Invalid { .. }));
        assert!(matches!(one("eth0tuntap"), Arg::Invalid { .. }));
        assert!(matches!(
            one("eth0=daemon,,unix,").meaning(),
            Arg::Eth { .. }
        ));
    }

    #[test]
    fn macs_are_read_like_the_kernel() {
        assert_eq!(
            Mac::from_text("fe:fd:0:1:2:3").bytes(),
            Some([0xfe, 0xfd, 0, 1, 2, 3])
        );
        assert_eq!(Mac::from_text("fe:fd:0:1:2").bytes(), None);
        assert_eq!(Mac::from_text("zz:fd:0:1:2:3").bytes(), None);
        assert_eq!(
            Mac::new([0xfe, 0xfd, 0, 1, 2, 3]).as_str(),
            "fe:fd:00:01:02:03"
        );
    }

    #[test]
    fn vec_pairs() {
        assert_eq!(
            one("vec0:transport=tap,ifname=tap0"),
            Arg::Vec {
                unit: 0,
                pairs: vec![
                    ("transport".into(), "tap".into()),
                    ("ifname".into(), "tap0".into())
                ]
            }
        );
        assert!(matches!(one("vec0:transport"), Arg::Invalid { .. }));
        assert!(matches!(one("vec0:a=b=c"), Arg::Invalid { .. }));
        assert!(matches!(one("vec0"), Arg::Invalid { .. }));
        assert!(matches!(one("vecx:transport=tap"), Arg::Invalid { .. }));
    }
}
