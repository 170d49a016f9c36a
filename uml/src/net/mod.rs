//! `--net` specs of `uml run`: what network a user asks for, and the kernel argument that
//! gives it on the kernel at hand.
//!
//! A UML kernel has up to two network drivers. The legacy one (`eth<n>=TRANSPORT,…`, up to
//! 6.x) has the `daemon`, `mcast`, `tuntap` and `vde` transports; the vector driver
//! (`vec<n>:transport=…,key=value,…`, 4.x on, the only one in 7.x) has `raw`, `tap`, `hybrid`,
//! `gre`, `l2tpv3`, `bess`, and from some 6.x release on `fd` and `vde`
//! (`arch/um/drivers/vector_user.c`). The rule here is one and the same for every spec:
//! **the legacy driver's transport where the kernel has it, else the vector driver's.** So a
//! 6.1 kernel (which has both drivers) keeps the transports it always had, and a 7.x kernel
//! gets their vector equivalents:
//!
//! | spec | 6.1 (Debian) | 7.x |
//! |---|---|---|
//! | `tap:DEV` | `eth<n>=tuntap,DEV,MAC` | `vec<n>:transport=tap,ifname=DEV` |
//! | `vde[:DIR]` | `eth<n>=vde,DIR,MAC` | `vec<n>:transport=vde,vnl=DIR` |
//! | `raw:IFACE`, `l2tpv3:…`, `gre:…` | vector | vector |
//! | `daemon`, `mcast` | legacy | none: refused |
//!
//! Why legacy first on 6.1: its vector `tap` transport also opens a raw packet socket on the
//! tap device (`uml_tap: failed to create paired raw socket` in 6.1.176), which needs
//! `CAP_NET_RAW`, while `tuntap` works for any user who owns the tap; and its vector driver
//! has no `vde` transport (the 6.1.176 binary has no `vnl` key).
//!
//! Interface `<n>` is the `<n>`th `--net`, whatever the driver: `eth<n>` or `vec<n>`. The
//! built-in guest of `uml run` renames `vec<n>` to `eth<n>` (keeping `vec<n>` as an altname),
//! so that the first interface is `eth0` on every kernel.

use std::net::IpAddr;
use std::path::Path;

use crate::kernel::Profile;

pub mod l2tpv3;
pub mod uplink;

/// One `--net` spec, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spec {
    /// `daemon[:CTL]`: a port of a `uml_switch` listening on `CTL`.
    Daemon { ctl: Option<String> },
    /// `switch:NAME`: a port of the `uml switch` called NAME (started when missing).
    Switch { name: String },
    /// `tap:DEV[,host=ADDR/PREFIX][,user=USER]` (also `tuntap:`): the host tap device DEV.
    Tap(Tap),
    /// `mcast[:GROUP[:PORT]]`.
    Mcast { group: String, port: String },
    /// `vde[:DIR]`: a port of the vde switch whose control directory is DIR.
    Vde { dir: Option<String> },
    /// `raw:IFACE`: the host interface IFACE itself, through a raw packet socket (root).
    Raw { iface: String },
    /// `l2tpv3:LOCAL:REMOTE[:OPTION,…]`: Ethernet over L2TPv3 to a peer at REMOTE.
    L2tpv3(Tunnel),
    /// `gre:LOCAL:REMOTE[:OPTION,…]`: Ethernet over GRE to a peer at REMOTE (root).
    Gre(Tunnel),
}

/// The host side of a `tap:` spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tap {
    /// The host's tap device.
    pub dev: String,
    /// `host=ADDR/PREFIX`: the address the host side gets when `uml run` creates the device.
    pub host: Option<String>,
    /// `user=USER`: the owner of a device `uml run` creates.
    pub user: Option<String>,
}

/// A tap device `uml run` created for a guest, removed when this is dropped (the guest has
/// ended, or never started).
#[derive(Debug)]
pub struct CreatedTap {
    dev: String,
}

impl CreatedTap {
    /// The device's name.
    pub fn name(&self) -> &str {
        &self.dev
    }

    /// Keeps the device after all (the guest goes on running without `uml run`).
    pub fn keep(self) {
        std::mem::forget(self);
    }
}

impl Drop for CreatedTap {
    fn drop(&mut self) {
        if let Err(e) = ip(&self.dev, &["link", "del", "dev", &self.dev]) {
            tracing::warn!("cannot remove the tap device {}: {e}", self.dev);
        }
    }
}

/// Whether this process's network namespace has an interface called `name`.
fn interface_exists(name: &str) -> bool {
    let Ok(c) = std::ffi::CString::new(name) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    unsafe { libc::if_nametoindex(c.as_ptr()) != 0 }
}

/// Runs `ip ARGS`, the error being the command and what it printed.
fn ip(dev: &str, args: &[&str]) -> Result<(), NetError> {
    let command = format!("ip {}", args.join(" "));
    let failed = |stderr: String| NetError::TapSetup {
        dev: dev.to_owned(),
        command: command.clone(),
        stderr,
    };
    let out = std::process::Command::new("ip")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| failed(format!("cannot run ip (iproute2): {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(failed(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ))
    }
}

impl Tap {
    /// Refuses an existing device that the kernel could not open: not a tap device, or a tap
    /// that another user owns (`/sys/class/net/DEV/{tun_flags,owner,group}`, tun.c; `-1` is
    /// "anyone"). Root opens any tap. Where sysfs does not show the device (a namespace
    /// entered without remounting /sys), nothing is checked.
    fn check_usable(&self) -> Result<(), NetError> {
        let sys = Path::new("/sys/class/net").join(&self.dev);
        if !sys.exists() {
            return Ok(());
        }
        let unusable = |why: String| NetError::TapUnusable {
            dev: self.dev.clone(),
            why,
        };
        let Ok(flags) = std::fs::read_to_string(sys.join("tun_flags")) else {
            return Err(unusable(format!(
                "{} is a host interface but not a tap device (raw:{} uses an ordinary interface)",
                self.dev, self.dev
            )));
        };
        let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).unwrap_or(0);
        if flags & (libc::IFF_TAP as u32) == 0 {
            return Err(unusable(format!(
                "{} is a tun device; the guest needs a tap device (`ip tuntap add dev NAME mode tap`)",
                self.dev
            )));
        }
        let id = |file: &str| {
            std::fs::read_to_string(sys.join(file))
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .unwrap_or(-1)
        };
        let (owner, group) = (id("owner"), id("group"));
        let uid = i64::from(nix::unistd::geteuid().as_raw());
        let in_group = i64::from(nix::unistd::getegid().as_raw()) == group
            || nix::unistd::getgroups()
                .is_ok_and(|gs| gs.iter().any(|g| i64::from(g.as_raw()) == group));
        // tun.c, tun_not_capable: a set owner must be the caller, and a set group one of its
        // groups, unless it has CAP_NET_ADMIN.
        if uid == 0 || ((owner == -1 || owner == uid) && (group == -1 || in_group)) {
            return Ok(());
        }
        Err(unusable(format!(
            "the tap device belongs to uid {owner}{}, so this user's kernel cannot open it; give it to you with `sudo ip tuntap del dev {dev} mode tap && sudo ip tuntap add dev {dev} mode tap user $USER`",
            if group == -1 {
                String::new()
            } else {
                format!(" and gid {group}")
            },
            dev = self.dev
        )))
    }

    /// Makes sure the host's tap device exists: as root, creates a missing one (owned by
    /// `user`, with the `host` address, up) and returns it, to be removed when the guest
    /// ends. An existing device is used as it is. The device belongs to the network namespace
    /// of this process, which is the one the kernel (started from here) opens it in.
    ///
    /// # Errors
    /// [`NetError::TapMissing`] when it is missing and this process is not root (the message
    /// gives the commands that create it), [`NetError::TapSetup`] when `ip` fails.
    pub fn prepare(&self) -> Result<Option<CreatedTap>, NetError> {
        if interface_exists(&self.dev) {
            self.check_usable()?;
            if self.host.is_some() || self.user.is_some() {
                tracing::warn!(
                    "the tap device {} exists; it is used as it is, without host= or user=",
                    self.dev
                );
            }
            return Ok(None);
        }
        if !nix::unistd::geteuid().is_root() {
            let user = self.user.clone().unwrap_or_else(|| {
                nix::unistd::User::from_uid(nix::unistd::getuid())
                    .ok()
                    .flatten()
                    .map_or_else(|| "$USER".to_owned(), |u| u.name)
            });
            let address = self
                .host
                .as_ref()
                .map(|a| {
                    format!(
                        ", `sudo ip addr add {a} dev {dev}` and `sudo ip link set {dev} up`",
                        dev = self.dev
                    )
                })
                .unwrap_or_else(|| format!(" and `sudo ip link set {} up`", self.dev));
            return Err(NetError::TapMissing {
                dev: self.dev.clone(),
                user,
                address,
            });
        }
        let dev = self.dev.as_str();
        let mut add = vec!["tuntap", "add", "dev", dev, "mode", "tap"];
        if let Some(user) = &self.user {
            add.extend(["user", user.as_str()]);
        }
        ip(dev, &add)?;
        let created = CreatedTap {
            dev: dev.to_owned(),
        };
        if let Some(addr) = &self.host {
            ip(dev, &["addr", "add", addr, "dev", dev])?;
        }
        ip(dev, &["link", "set", "dev", dev, "up"])?;
        Ok(Some(created))
    }
}

/// The two ends of an `l2tpv3:` or `gre:` tunnel and its options, as kernel keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tunnel {
    pub local: IpAddr,
    pub remote: IpAddr,
    /// `key=value` pairs in the kernel's names (`rx_session`, `srcport`, …), defaults filled in.
    pub keys: Vec<(String, String)>,
}

/// Which of the kernel's network drivers serves a spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// `eth<n>=…`
    Legacy,
    /// `vec<n>:transport=…`
    Vector,
}

/// Why a `--net` spec cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error(
        "--net {spec}: unknown network {kind:?}; expected switch:NAME, tap:DEV, vde[:DIR], raw:IFACE, l2tpv3:LOCAL:REMOTE, gre:LOCAL:REMOTE, daemon[:CTL] or mcast[:GROUP[:PORT]]"
    )]
    Unknown { spec: String, kind: String },
    #[error("--net {spec}: {why}")]
    Invalid { spec: String, why: String },
    #[error(
        "--net {spec}: kernel {release} ({path}) has no `{transport}` network; it has {available}. Nothing was started"
    )]
    Missing {
        spec: String,
        transport: &'static str,
        release: String,
        path: String,
        available: String,
    },
    #[error(
        "--net tap:{dev}: the host has no tap device {dev}, and only root can create one. Create it for yourself with `sudo ip tuntap add dev {dev} mode tap user {user}`{address}, or run uml run as root; nothing was started"
    )]
    TapMissing {
        dev: String,
        user: String,
        address: String,
    },
    #[error(
        "--net {spec}: nothing was started: LOCAL must be an address of this host (in this network namespace){port}; binding {addr} failed"
    )]
    TunnelLocal {
        spec: String,
        addr: String,
        port: String,
        #[source]
        source: std::sync::Arc<std::io::Error>,
    },
    #[error("--net tap:{dev}: {why}; nothing was started")]
    TapUnusable { dev: String, why: String },
    #[error("--net tap:{dev}: `{command}` failed: {stderr}; nothing was started")]
    TapSetup {
        dev: String,
        command: String,
        stderr: String,
    },
}

/// Keys of the vector driver's l2tpv3 transport a spec may set (`vector_transports.c`).
const L2TPV3_KEYS: &[&str] = &[
    "srcport",
    "dstport",
    "udp",
    "rx_session",
    "tx_session",
    "rx_cookie",
    "tx_cookie",
    "cookie64",
    "counter",
    "pin_counter",
];
/// Keys of the vector driver's gre transport a spec may set (`vector_transports.c`).
const GRE_KEYS: &[&str] = &["rx_key", "tx_key", "sequence", "pin_sequence"];

/// The UDP port of L2TPv3 when a spec names none (RFC 3931 registers 1701 for L2TP).
const L2TP_PORT: &str = "1701";

impl Spec {
    /// Parses one `--net` value.
    ///
    /// # Errors
    /// [`NetError::Unknown`] for an unknown kind, [`NetError::Invalid`] for a malformed one.
    pub fn parse(spec: &str) -> Result<Spec, NetError> {
        let invalid = |why: &str| NetError::Invalid {
            spec: spec.to_owned(),
            why: why.to_owned(),
        };
        let (kind, rest) = spec.split_once(':').unwrap_or((spec, ""));
        // The kernel splits its arguments at ',' (both drivers) and '=' (vector): a value
        // holding one would be cut.
        let plain = |value: &str, what: &str| {
            if value.is_empty()
                || value.contains([',', '='])
                || value.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                Err(invalid(&format!(
                    "{what} {value:?} is empty or has ',', '=', a space or a control character in it"
                )))
            } else {
                Ok(value.to_owned())
            }
        };
        Ok(match kind {
            "daemon" => Spec::Daemon {
                ctl: (!rest.is_empty())
                    .then(|| plain(rest, "the control socket"))
                    .transpose()?,
            },
            "switch" => {
                if rest.is_empty() {
                    return Err(invalid("switch:NAME needs a switch name"));
                }
                Spec::Switch {
                    name: rest.to_owned(),
                }
            }
            "tap" | "tuntap" => {
                let mut fields = rest.split(',');
                let dev = fields.next().unwrap_or("");
                if dev.is_empty() {
                    return Err(invalid(
                        "tap:DEV needs the host's tap device, e.g. tap:tap0 (as root, `uml run` creates it when missing)",
                    ));
                }
                if dev.len() > 15
                    || dev.contains(['/', ':', '='])
                    || dev.chars().any(|c| c.is_whitespace() || c.is_control())
                {
                    return Err(invalid(&format!(
                        "{dev:?} is not an interface name (at most 15 characters, no '/', ':', '=' or space)"
                    )));
                }
                let mut tap = Tap {
                    dev: dev.to_owned(),
                    host: None,
                    user: None,
                };
                for field in fields {
                    match field.split_once('=') {
                        Some(("host", addr)) if !addr.is_empty() => {
                            tap.host = Some(host_address(addr).map_err(|why| invalid(&why))?);
                        }
                        Some(("user", user)) if !user.is_empty() => tap.user = Some(user.into()),
                        _ => {
                            return Err(invalid(&format!(
                                "unknown tap option {field:?}; expected host=ADDR/PREFIX or user=USER"
                            )));
                        }
                    }
                }
                Spec::Tap(tap)
            }
            "mcast" => {
                let (group, port) = rest.split_once(':').unwrap_or((rest, ""));
                for (value, what) in [(group, "the group"), (port, "the port")] {
                    if !value.is_empty() {
                        plain(value, what)?;
                    }
                }
                Spec::Mcast {
                    group: group.to_owned(),
                    port: port.to_owned(),
                }
            }
            "vde" => Spec::Vde {
                dir: (!rest.is_empty())
                    .then(|| plain(rest, "the switch directory"))
                    .transpose()?,
            },
            "raw" => Spec::Raw {
                iface: plain(rest, "raw:IFACE: the interface").map_err(|_| {
                    invalid("raw:IFACE needs a host interface name without ',' or '='")
                })?,
            },
            "l2tpv3" => Spec::L2tpv3(Tunnel::parse(rest, true).map_err(|why| invalid(&why))?),
            "gre" => Spec::Gre(Tunnel::parse(rest, false).map_err(|why| invalid(&why))?),
            other => {
                return Err(NetError::Unknown {
                    spec: spec.to_owned(),
                    kind: other.to_owned(),
                });
            }
        })
    }

    /// The spec's kind, as a user writes it.
    pub fn kind(&self) -> &'static str {
        match self {
            Spec::Daemon { .. } => "daemon",
            Spec::Switch { .. } => "switch",
            Spec::Tap(_) => "tap",
            Spec::Mcast { .. } => "mcast",
            Spec::Vde { .. } => "vde",
            Spec::Raw { .. } => "raw",
            Spec::L2tpv3(_) => "l2tpv3",
            Spec::Gre(_) => "gre",
        }
    }

    /// The driver that serves this spec on `profile`'s kernel: the legacy one where it has the
    /// transport, else the vector one; `None` when neither has it.
    pub fn driver(&self, profile: &Profile) -> Option<Driver> {
        let vector = profile.has("UML_NET_VECTOR");
        let (legacy, in_vector) = match self {
            Spec::Daemon { .. } => (profile.has("UML_NET_DAEMON"), false),
            // A bess port of `uml switch` (vector_user.c: transport=bess).
            Spec::Switch { .. } => (profile.has("UML_NET_DAEMON"), true),
            Spec::Tap(_) => (profile.has("UML_NET_TUNTAP"), true),
            Spec::Mcast { .. } => (profile.has("UML_NET_MCAST"), false),
            // The vector driver's vde transport came after the legacy drivers' last kernels
            // with only them; a kernel with both keeps to the legacy one.
            Spec::Vde { .. } => (profile.has("UML_NET_VDE"), true),
            Spec::Raw { .. } | Spec::L2tpv3(_) | Spec::Gre(_) => (false, true),
        };
        if legacy && profile.has("UML_NET") {
            Some(Driver::Legacy)
        } else if in_vector && vector {
            Some(Driver::Vector)
        } else {
            None
        }
    }

    /// Checks that `profile`'s kernel can serve this spec.
    ///
    /// # Errors
    /// [`NetError::Missing`], naming the specs the kernel does have.
    pub fn require(&self, spec: &str, profile: &Profile) -> Result<Driver, NetError> {
        self.driver(profile).ok_or_else(|| NetError::Missing {
            spec: spec.to_owned(),
            transport: self.kind(),
            release: profile.release.clone(),
            path: profile.path.display().to_string(),
            available: describe_available(profile),
        })
    }

    /// The kernel argument for interface `unit` with address `mac` on `profile`'s kernel.
    /// `Switch` is not handled here (its socket comes from starting the switch): `None`.
    ///
    /// # Errors
    /// [`NetError::Missing`] when the kernel lacks the transport.
    pub fn kernel_arg(
        &self,
        spec: &str,
        unit: usize,
        mac: &str,
        profile: &Profile,
    ) -> Result<Option<String>, NetError> {
        let driver = self.require(spec, profile)?;
        let vec = |transport: &str, keys: &[(&str, &str)]| {
            let mut s = format!("vec{unit}:transport={transport}");
            for (k, v) in keys {
                s.push_str(&format!(",{k}={v}"));
            }
            s.push_str(&format!(",mac={mac}"));
            s
        };
        Ok(Some(match (self, driver) {
            (Spec::Switch { .. }, _) => return Ok(None),
            (Spec::Daemon { ctl }, _) => {
                let ctl = ctl
                    .as_deref()
                    .unwrap_or("/var/run/uml-utilities/uml_switch.ctl");
                format!("eth{unit}=daemon,{mac},unix,{ctl}")
            }
            (Spec::Mcast { group, port }, _) => format!("eth{unit}=mcast,{mac},{group},{port}"),
            (Spec::Tap(tap), Driver::Legacy) => format!("eth{unit}=tuntap,{},{mac}", tap.dev),
            (Spec::Tap(tap), Driver::Vector) => vec("tap", &[("ifname", &tap.dev)]),
            (Spec::Vde { dir }, Driver::Legacy) => {
                format!("eth{unit}=vde,{},{mac}", dir.as_deref().unwrap_or(""))
            }
            (Spec::Vde { dir: Some(dir) }, Driver::Vector) => vec("vde", &[("vnl", dir)]),
            (Spec::Vde { dir: None }, Driver::Vector) => vec("vde", &[]),
            (Spec::Raw { iface }, _) => vec("raw", &[("ifname", iface)]),
            (Spec::L2tpv3(t), _) | (Spec::Gre(t), _) => {
                let transport = self.kind();
                let (src, dst) = (t.local.to_string(), t.remote.to_string());
                let mut keys: Vec<(&str, &str)> = vec![("src", &src), ("dst", &dst)];
                if t.local.is_ipv6() {
                    keys.push(("v6", "1"));
                }
                keys.extend(t.keys.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                vec(transport, &keys)
            }
        }))
    }
}

impl Tunnel {
    /// Checks that the kernel will be able to bind the local end: LOCAL is an address of this
    /// host (in this process's network namespace, which the kernel inherits) and, for l2tpv3
    /// over UDP, its port is free. The kernel would otherwise only fail when the guest brings
    /// the interface up (`l2tpv3_open : could not bind socket err=99`, and `ip` says "Invalid
    /// argument").
    ///
    /// # Errors
    /// [`NetError::TunnelLocal`] with the bind error.
    pub fn check_local(&self, spec: &str) -> Result<(), NetError> {
        let key = |k: &str| {
            self.keys
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        let udp_port = (key("udp") == Some("1"))
            .then(|| key("srcport").and_then(|p| p.parse::<u16>().ok()))
            .flatten();
        std::net::UdpSocket::bind((self.local, udp_port.unwrap_or(0)))
            .map(drop)
            .map_err(|e| NetError::TunnelLocal {
                spec: spec.to_owned(),
                addr: self.local.to_string(),
                port: udp_port
                    .map(|p| format!(", with UDP port {p} free"))
                    .unwrap_or_default(),
                source: std::sync::Arc::new(e),
            })
    }

    /// `LOCAL:REMOTE[:OPTION,…]`; an IPv6 address in brackets (`[2001:db8::1]`). Options:
    /// `session=N` (both directions), `port=N` (both ends' UDP port), `cookie=N`, `key=N`
    /// (gre, both directions), `ip` (l2tpv3 straight over IP instead of UDP), or any key of the
    /// kernel's transport (`rx_session=N`, `srcport=N`, …).
    fn parse(rest: &str, l2tpv3: bool) -> Result<Tunnel, String> {
        let usage = if l2tpv3 {
            "expected l2tpv3:LOCAL_ADDR:REMOTE_ADDR[:OPTION,…], e.g. l2tpv3:192.0.2.1:192.0.2.2:session=7"
        } else {
            "expected gre:LOCAL_ADDR:REMOTE_ADDR[:OPTION,…], e.g. gre:192.0.2.1:192.0.2.2:key=7"
        };
        let (local, rest) = address(rest).ok_or(usage)?;
        let rest = rest.strip_prefix(':').ok_or(usage)?;
        let (remote, rest) = address(rest).ok_or(usage)?;
        let options = match rest {
            "" => "",
            r => r.strip_prefix(':').ok_or(usage)?,
        };
        if local.is_ipv6() != remote.is_ipv6() {
            return Err(format!(
                "{local} and {remote} are of different address families"
            ));
        }
        let allowed = if l2tpv3 { L2TPV3_KEYS } else { GRE_KEYS };
        let mut keys: Vec<(String, String)> = Vec::new();
        fn set(keys: &mut Vec<(String, String)>, k: &str, v: &str) {
            match keys.iter_mut().find(|(key, _)| key == k) {
                Some(kv) => kv.1 = v.to_owned(),
                None => keys.push((k.to_owned(), v.to_owned())),
            }
        }
        if l2tpv3 {
            // vector_transports.c: without rx_session and tx_session the interface is refused
            // (-EINVAL); UDP encapsulation needs no privilege (a raw IPPROTO_L2TP socket does).
            set(&mut keys, "udp", "1");
            set(&mut keys, "srcport", L2TP_PORT);
            set(&mut keys, "dstport", L2TP_PORT);
            set(&mut keys, "rx_session", "1");
            set(&mut keys, "tx_session", "1");
        }
        for option in options.split(',').filter(|o| !o.is_empty()) {
            let (k, v) = option.split_once('=').unwrap_or((option, ""));
            let number = || {
                // vector_transports.c reads cookies with kstrtoul and every other number with
                // kstrtoint (base 0: 0x… is hex) into an unsigned int. A value above INT_MAX
                // (even the 0xffffffff of the kernel's own howto) then reads as missing, and
                // bringing the interface up crashes the 7.2 kernel ("Kernel mode fault").
                let max = if k.ends_with("cookie") {
                    u64::MAX
                } else {
                    i32::MAX as u64
                };
                let parsed = match v.strip_prefix("0x") {
                    Some(hex) => u64::from_str_radix(hex, 16),
                    // Base 0 reads a leading 0 as octal: refused, so that 010 is not 8.
                    None if v.len() > 1 && v.starts_with('0') => {
                        return Err(format!(
                            "option {option:?}: the kernel would read {v} as octal; write it without leading zeros"
                        ));
                    }
                    None => v.parse::<u64>(),
                };
                match parsed {
                    Ok(n) if n <= max => Ok(v),
                    Ok(_) => Err(format!(
                        "option {option:?}: the kernel takes at most {max} for {k} (a larger value crashes it when the interface comes up)"
                    )),
                    Err(_) => Err(format!("option {option:?}: {k} takes a number")),
                }
            };
            match (k, l2tpv3) {
                ("ip", true) if v.is_empty() => {
                    set(&mut keys, "udp", "0");
                    keys.retain(|(key, _)| key != "srcport" && key != "dstport");
                }
                ("session", true) => {
                    let n = number()?;
                    set(&mut keys, "rx_session", n);
                    set(&mut keys, "tx_session", n);
                }
                ("port", true) => {
                    let n = number()?;
                    set(&mut keys, "srcport", n);
                    set(&mut keys, "dstport", n);
                }
                ("cookie", true) => {
                    let n = number()?;
                    set(&mut keys, "rx_cookie", n);
                    set(&mut keys, "tx_cookie", n);
                }
                ("key", false) => {
                    let n = number()?;
                    set(&mut keys, "rx_key", n);
                    set(&mut keys, "tx_key", n);
                }
                (k, _) if allowed.contains(&k) => set(&mut keys, k, number()?),
                _ => {
                    return Err(format!(
                        "unknown option {option:?}; expected {}{}",
                        if l2tpv3 {
                            "session=N, port=N, cookie=N, ip, or one of "
                        } else {
                            "key=N or one of "
                        },
                        allowed.join("=N, ") + "=N"
                    ));
                }
            }
        }
        Ok(Tunnel {
            local,
            remote,
            keys,
        })
    }
}

/// An address at the start of `s` (IPv6 in brackets) and what follows it.
fn address(s: &str) -> Option<(IpAddr, &str)> {
    if let Some(inner) = s.strip_prefix('[') {
        let (addr, rest) = inner.split_once(']')?;
        return Some((addr.parse::<std::net::Ipv6Addr>().ok()?.into(), rest));
    }
    let end = s.find(':').unwrap_or(s.len());
    Some((
        s[..end].parse::<std::net::Ipv4Addr>().ok()?.into(),
        &s[end..],
    ))
}

/// `ADDR/PREFIX` (a prefix of 24 or 64 when none is given).
fn host_address(s: &str) -> Result<String, String> {
    let (addr, prefix) = s.split_once('/').unwrap_or((s, ""));
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("host={s}: {addr:?} is not an IP address"))?;
    let max = if addr.is_ipv6() { 128 } else { 32 };
    let prefix: u8 = match prefix {
        "" if addr.is_ipv6() => 64,
        "" => 24,
        p => p
            .parse()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("host={s}: the prefix length is 0 to {max}"))?,
    };
    Ok(format!("{addr}/{prefix}"))
}

/// The `--net` kinds `profile`'s kernel serves, for error messages.
pub fn available(profile: &Profile) -> Vec<&'static str> {
    let probes = [
        Spec::Switch { name: "x".into() },
        Spec::Tap(Tap {
            dev: "x".into(),
            host: None,
            user: None,
        }),
        Spec::Vde { dir: None },
        Spec::Raw { iface: "x".into() },
        Spec::L2tpv3(Tunnel {
            local: IpAddr::from([0, 0, 0, 0]),
            remote: IpAddr::from([0, 0, 0, 0]),
            keys: vec![],
        }),
        Spec::Gre(Tunnel {
            local: IpAddr::from([0, 0, 0, 0]),
            remote: IpAddr::from([0, 0, 0, 0]),
            keys: vec![],
        }),
        Spec::Daemon { ctl: None },
        Spec::Mcast {
            group: String::new(),
            port: String::new(),
        },
    ];
    probes
        .iter()
        .filter(|s| s.driver(profile).is_some())
        .map(Spec::kind)
        .collect()
}

fn describe_available(profile: &Profile) -> String {
    let kinds = available(profile);
    let driver = match (profile.has("UML_NET"), profile.has("UML_NET_VECTOR")) {
        (true, true) => "the legacy and the vector network drivers",
        (false, true) => "only the vector network driver",
        (true, false) => "only the legacy network driver",
        (false, false) => return "no network driver (CONFIG_UML_NET_VECTOR is not set)".into(),
    };
    format!("{driver}: {}", kinds.join(", "))
}

/// A locally administered MAC (`fe:fd:` as UML's documentation uses), stable per umid and
/// interface, so that a guest keeps its address across boots.
pub fn mac_for(umid: &str, unit: usize) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    umid.hash(&mut h);
    unit.hash(&mut h);
    let b = h.finish().to_le_bytes();
    format!("fe:fd:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3])
}

/// Whether a switch port of this kernel is a bess port: it has the vector driver but not the
/// `daemon` transport (7.x kernels).
pub fn bess_only(profile: &Profile) -> bool {
    !profile.has("UML_NET_DAEMON") && profile.has("UML_NET_VECTOR")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::Version;

    const MAC: &str = "fe:fd:00:00:00:01";

    fn profiles() -> Vec<(Profile, bool)> {
        // Debian's 6.1 (both drivers) and 7.x (vector only), as recorded; and the real
        // kernels where this machine has them (`--showconfig`, no boot).
        let mut v = vec![
            (Profile::assumed(Version::new(6, 1, 176)), true),
            (Profile::assumed(Version::new(7, 2, 13)), false),
        ];
        if let Some(Ok(p)) = crate::kernel::packaged().map(|k| Profile::read(&k)) {
            let legacy = p.has("UML_NET");
            v.push((p, legacy));
        }
        if let Some(dir) = crate::kernel::kernels_dir() {
            for k in crate::kernel::installed_in(&dir) {
                if let Ok(p) = Profile::read(&k.path) {
                    let legacy = p.has("UML_NET");
                    v.push((p, legacy));
                }
            }
        }
        v
    }

    fn arg(spec: &str, unit: usize, p: &Profile) -> Result<Option<String>, NetError> {
        Spec::parse(spec)?.kernel_arg(spec, unit, MAC, p)
    }

    #[test]
    fn tap_is_tuntap_on_legacy_kernels_and_vector_tap_on_vector_only_ones() {
        for (p, legacy) in profiles() {
            let got = arg("tap:tap3", 0, &p).unwrap().unwrap();
            if legacy {
                assert_eq!(got, format!("eth0=tuntap,tap3,{MAC}"), "{}", p.release);
            } else {
                assert_eq!(got, format!("vec0:transport=tap,ifname=tap3,mac={MAC}"));
            }
            assert_eq!(
                arg("tuntap:tap3", 0, &p).unwrap(),
                arg("tap:tap3", 0, &p).unwrap()
            );
        }
    }

    #[test]
    fn vde_is_legacy_where_the_kernel_has_it_else_vector() {
        for (p, legacy) in profiles() {
            let got = arg("vde:/run/vde.ctl", 1, &p).unwrap().unwrap();
            let bare = arg("vde", 1, &p).unwrap().unwrap();
            if legacy {
                assert_eq!(got, format!("eth1=vde,/run/vde.ctl,{MAC}"));
                assert_eq!(bare, format!("eth1=vde,,{MAC}"));
            } else {
                assert_eq!(
                    got,
                    format!("vec1:transport=vde,vnl=/run/vde.ctl,mac={MAC}")
                );
                assert_eq!(bare, format!("vec1:transport=vde,mac={MAC}"));
            }
        }
    }

    #[test]
    fn raw_l2tpv3_and_gre_are_vector_interfaces_on_every_kernel() {
        for (p, _) in profiles() {
            assert_eq!(
                arg("raw:veth1", 2, &p).unwrap().unwrap(),
                format!("vec2:transport=raw,ifname=veth1,mac={MAC}")
            );
            assert_eq!(
                arg("l2tpv3:192.0.2.1:192.0.2.2", 0, &p).unwrap().unwrap(),
                format!(
                    "vec0:transport=l2tpv3,src=192.0.2.1,dst=192.0.2.2,udp=1,srcport=1701,dstport=1701,rx_session=1,tx_session=1,mac={MAC}"
                )
            );
            assert_eq!(
                arg(
                    "l2tpv3:[2001:db8::1]:[2001:db8::2]:session=9,port=1702,cookie=5",
                    0,
                    &p
                )
                .unwrap()
                .unwrap(),
                format!(
                    "vec0:transport=l2tpv3,src=2001:db8::1,dst=2001:db8::2,v6=1,udp=1,srcport=1702,dstport=1702,rx_session=9,tx_session=9,rx_cookie=5,tx_cookie=5,mac={MAC}"
                )
            );
            assert_eq!(
                arg(
                    "l2tpv3:10.0.0.1:10.0.0.2:ip,rx_session=3,tx_session=4",
                    0,
                    &p
                )
                .unwrap()
                .unwrap(),
                format!(
                    "vec0:transport=l2tpv3,src=10.0.0.1,dst=10.0.0.2,udp=0,rx_session=3,tx_session=4,mac={MAC}"
                )
            );
            assert!(
                arg(
                    "l2tpv3:10.0.0.1:10.0.0.2:session=0x7fffffff,cookie=0xffffffff",
                    0,
                    &p
                )
                .unwrap()
                .unwrap()
                .contains(",rx_session=0x7fffffff,tx_session=0x7fffffff,rx_cookie=0xffffffff,")
            );
            assert_eq!(
                arg("gre:198.51.100.1:198.51.100.2:key=7", 3, &p)
                    .unwrap()
                    .unwrap(),
                format!(
                    "vec3:transport=gre,src=198.51.100.1,dst=198.51.100.2,rx_key=7,tx_key=7,mac={MAC}"
                )
            );
        }
    }

    #[test]
    fn a_transport_the_kernel_lacks_is_refused_naming_what_it_has() {
        let p = Profile::assumed(Version::new(7, 2, 13));
        for spec in ["daemon", "mcast:239.0.0.1:1102"] {
            let err = arg(spec, 0, &p).unwrap_err().to_string();
            assert!(err.contains("has no"), "{err}");
            assert!(
                err.contains("only the vector network driver: switch, tap, vde, raw, l2tpv3, gre"),
                "{err}"
            );
        }
        let old = Profile::assumed(Version::new(6, 1, 176));
        assert_eq!(
            available(&old),
            [
                "switch", "tap", "vde", "raw", "l2tpv3", "gre", "daemon", "mcast"
            ]
        );
        assert!(
            arg("daemon", 0, &old)
                .unwrap()
                .unwrap()
                .starts_with("eth0=daemon,")
        );
    }

    #[test]
    fn malformed_specs_are_refused() {
        for bad in [
            "bogus",
            "tap",
            "tap:",
            "tap:a/b",
            "tap:averyveryverylongname",
            "tap:t0,host=10.0.0.300",
            "tap:t0,colour=red",
            "raw:",
            "raw:a,b",
            "switch:",
            "l2tpv3:",
            "l2tpv3:192.0.2.1",
            "l2tpv3:192.0.2.1:[2001:db8::1]",
            "l2tpv3:192.0.2.1:192.0.2.2:session=x",
            "l2tpv3:192.0.2.1:192.0.2.2:session=0xffffffff",
            "l2tpv3:192.0.2.1:192.0.2.2:session=010",
            "l2tpv3:192.0.2.1:192.0.2.2:rx_session=2147483648",
            "gre:192.0.2.1:192.0.2.2:key=4294967295",
            "l2tpv3:192.0.2.1:192.0.2.2:key=1",
            "gre:192.0.2.1:192.0.2.2:session=1",
            "gre:host.example:192.0.2.2",
            "vde:/a,b",
            "mcast:239.0.0.1,x",
            "tap:t\u{0}",
            "raw:eth\t0",
        ] {
            assert!(Spec::parse(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn a_local_tunnel_address_the_host_lacks_is_refused_before_boot() {
        let spec = "l2tpv3:203.0.113.9:192.0.2.2";
        let Spec::L2tpv3(t) = Spec::parse(spec).unwrap() else {
            unreachable!()
        };
        let err = t.check_local(spec).unwrap_err().to_string();
        assert!(
            err.contains("LOCAL must be an address of this host"),
            "{err}"
        );
        let spec = "gre:127.0.0.1:192.0.2.2";
        let Spec::Gre(t) = Spec::parse(spec).unwrap() else {
            unreachable!()
        };
        t.check_local(spec).unwrap();
    }

    #[test]
    fn tap_options_give_the_host_side() {
        assert_eq!(
            Spec::parse("tap:tap0,host=192.0.2.1,user=alice").unwrap(),
            Spec::Tap(Tap {
                dev: "tap0".into(),
                host: Some("192.0.2.1/24".into()),
                user: Some("alice".into()),
            })
        );
        assert_eq!(
            Spec::parse("tap:tap0,host=2001:db8::1/112").unwrap(),
            Spec::Tap(Tap {
                dev: "tap0".into(),
                host: Some("2001:db8::1/112".into()),
                user: None,
            })
        );
    }
}

/// A guest address given on the host side: the `ip=ADDR/PREFIX` field of a `--net` spec
/// (`switch:lab,ip=10.0.0.2/24`), IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestAddress {
    pub addr: std::net::Ipv4Addr,
    pub prefix: u8,
}

impl GuestAddress {
    /// `10.0.0.2/24`.
    ///
    /// # Errors
    /// A message naming what is wrong and what is accepted.
    pub fn parse(text: &str) -> Result<GuestAddress, String> {
        let bad = || {
            format!("ip={text}: expected an IPv4 address and prefix length, like ip=10.0.0.2/24")
        };
        let (addr, prefix) = text.split_once('/').ok_or_else(bad)?;
        let addr: std::net::Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        if prefix == 0 || prefix > 32 || addr.is_unspecified() {
            return Err(bad());
        }
        Ok(GuestAddress { addr, prefix })
    }

    /// The dotted netmask (`255.255.255.0` for /24).
    pub fn netmask(&self) -> std::net::Ipv4Addr {
        std::net::Ipv4Addr::from(u32::MAX << (32 - u32::from(self.prefix)))
    }

    /// The kernel command line word that configures `iface` statically at boot, in the
    /// `ip=CLIENT:PEER:GATEWAY:NETMASK:HOSTNAME:IFACE:none` form that the kernel's own
    /// autoconfiguration and systemd's network generator (`systemd-network-generator`, from a
    /// `uml image create` image) both read.
    pub fn kernel_word(&self, iface: &str) -> String {
        format!("ip={}:::{}::{iface}:none", self.addr, self.netmask())
    }
}

/// What the host asks of a guest on its kernel command line (`/proc/cmdline` in the guest):
/// the hostname (`systemd.hostname=`) and interface addresses (`ip=…:IFACE:none`, as
/// [`GuestAddress::kernel_word`] writes them). An init that is not systemd reads them here.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HostSettings {
    pub hostname: Option<String>,
    /// (interface, address)
    pub addresses: Vec<(String, GuestAddress)>,
}

impl HostSettings {
    /// Reads the words of a kernel command line; words it does not know are skipped, and so
    /// are malformed ones (an init must never stop on them).
    pub fn from_cmdline(cmdline: &str) -> HostSettings {
        let mut out = HostSettings::default();
        for word in cmdline.split_whitespace().take(4096) {
            if let Some(h) = word.strip_prefix("systemd.hostname=") {
                out.hostname = Some(h.to_owned());
            } else if let Some(v) = word.strip_prefix("ip=") {
                let f: Vec<&str> = v.split(':').collect();
                if let [addr, _, _, mask, _, iface, ..] = f.as_slice()
                    && let (Ok(addr), Ok(mask)) = (
                        addr.parse::<std::net::Ipv4Addr>(),
                        mask.parse::<std::net::Ipv4Addr>(),
                    )
                {
                    let bits = u32::from(mask);
                    let prefix = bits.leading_ones();
                    if bits.count_ones() == prefix && prefix > 0 && !iface.is_empty() {
                        out.addresses.push((
                            (*iface).to_owned(),
                            GuestAddress {
                                addr,
                                prefix: prefix as u8,
                            },
                        ));
                    }
                }
            }
        }
        out
    }
}

impl std::fmt::Display for GuestAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Splits the `ip=ADDR/PREFIX` field off a `--net` spec: `switch:lab,ip=10.0.0.2/24` →
/// (`switch:lab`, 10.0.0.2/24). The rest is the spec as [`Spec::parse`] takes it.
///
/// # Errors
/// A bad address, or `ip=` given twice.
pub fn split_guest_address(spec: &str) -> Result<(String, Option<GuestAddress>), String> {
    let mut rest = Vec::new();
    let mut address = None;
    for field in spec.split(',') {
        match field.strip_prefix("ip=") {
            Some(a) => {
                if address.is_some() {
                    return Err(format!(
                        "{spec}: ip= given twice; a guest interface takes one address here"
                    ));
                }
                address = Some(GuestAddress::parse(a)?);
            }
            None => rest.push(field),
        }
    }
    Ok((rest.join(","), address))
}

#[cfg(test)]
mod guest_address_tests {
    use super::*;

    #[test]
    fn ip_fields_are_split_off_and_checked() {
        let (rest, a) = split_guest_address("switch:lab,ip=10.0.0.2/24").unwrap();
        assert_eq!(rest, "switch:lab");
        let a = a.unwrap();
        assert_eq!(a.to_string(), "10.0.0.2/24");
        assert_eq!(a.netmask().to_string(), "255.255.255.0");
        assert_eq!(
            a.kernel_word("vec0"),
            "ip=10.0.0.2:::255.255.255.0::vec0:none"
        );
        assert_eq!(
            split_guest_address("tap:t0,host=192.0.2.1/24").unwrap(),
            ("tap:t0,host=192.0.2.1/24".to_owned(), None)
        );
        let h = HostSettings::from_cmdline(&format!(
            "root=/dev/root systemd.hostname=web1 {} ip=garbage ip=1.2.3.4:::255.0.255.0::x:none",
            a.kernel_word("vec0")
        ));
        assert_eq!(h.hostname.as_deref(), Some("web1"));
        assert_eq!(h.addresses, vec![("vec0".to_owned(), a)]);
        for bad in [
            "switch:a,ip=10.0.0.2",
            "switch:a,ip=x/24",
            "switch:a,ip=10.0.0.2/33",
            "switch:a,ip=1.2.3.4/8,ip=1.2.3.5/8",
        ] {
            assert!(split_guest_address(bad).is_err(), "{bad}");
        }
    }
}
