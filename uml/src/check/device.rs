//! Devices: console and serial lines, `eth` transports and their MACs, `vec` devices.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::MAX_VEC_PAIRS;
use super::host::host_has_legacy_ptys;
use super::{Checker, Severity};
use crate::cmdline::{Arg, Channel, Channels, Transport};
use crate::options::{self, Presence};

impl Checker<'_> {
    /// `eth<n>=` on a kernel without the legacy network driver (7.x has only the vector one):
    /// the word is unknown and lands in init's environment, and no interface exists. Verified
    /// on 7.2.12: `Unknown kernel command line parameters "eth0=daemon,,unix,/tmp/x.ctl", will
    /// be passed to user space.`
    pub(super) fn eth_without_driver(
        &mut self,
        index: usize,
        arg: &Arg,
        unit: u64,
        transport: &Transport,
    ) {
        let series = self.env.kernel.series();
        let instead = match transport {
            Transport::Daemon { ctl, .. } => format!(
                "the vector driver has no uml_switch client; `vec{unit}:transport=bess,src=<own \
                 socket>,dst=<switch socket>` connects to a switch that accepts SOCK_SEQPACKET \
                 connections (one Ethernet frame per message){}",
                ctl.as_ref()
                    .map(|c| format!(" instead of the uml_switch control socket {}", c.display()))
                    .unwrap_or_default()
            ),
            Transport::Tuntap { dev: Some(dev), .. }
            | Transport::Ethertap { dev: Some(dev), .. } => {
                format!("use `vec{unit}:transport=tap,ifname={dev}`")
            }
            Transport::Tuntap { dev: None, .. } => format!(
                "use `vec{unit}:transport=tap` (the kernel creates a tap device, which needs \
                 CAP_NET_ADMIN; uml_net is not used)"
            ),
            Transport::Vde { switch, .. } => format!(
                "use `vec{unit}:transport=vde{}` (runs vde_plug)",
                switch
                    .as_ref()
                    .map(|s| format!(",vnl={}", s.display()))
                    .unwrap_or_default()
            ),
            Transport::Ucast { remote, .. } => format!(
                "the closest is a point-to-point tunnel, `vec{unit}:transport=l2tpv3,dst={},…` or \
                 `transport=gre`, but the peer must speak that encapsulation: a 6.1 guest's ucast \
                 is not compatible",
                remote.as_deref().unwrap_or("<peer>")
            ),
            Transport::Mcast { .. } => format!(
                "nothing is equivalent: l2tpv3 and gre are point-to-point tunnels, not a \
                 multicast group; for guests on one host connect each with \
                 `vec{unit}:transport=bess` to one switch"
            ),
            _ => format!(
                "the vector driver's transports are tap, hybrid, raw, gre, l2tpv3, bess, fd and \
                 vde: `vec{unit}:transport=…`"
            ),
        };
        self.push(
            Severity::Error,
            "eth-not-in-kernel",
            Some((index, arg)),
            format!(
                "this {series} kernel has no eth driver (no CONFIG_UML_NET; 7.x has only the \
                 vector driver): no eth{unit} is created and the word lands in init's \
                 environment; {instead}"
            ),
        );
    }

    pub(super) fn line(
        &mut self,
        index: usize,
        arg: &Arg,
        device: &'static str,
        unit: Option<u64>,
        channels: &Channels,
    ) {
        let at = Some((index, arg));
        if let Some(first) = self.lines.insert((device, unit), index) {
            let which = unit.map_or_else(|| format!("{device}="), |u| format!("{device}{u}="));
            self.push(
                Severity::Warning,
                "line-duplicate",
                at,
                format!("{which} is also given by argument {first}: the last one wins"),
            );
        }
        let chans: Vec<&Channel> = match channels {
            Channels::None => Vec::new(),
            Channels::Both(c) => vec![c],
            Channels::Pair(i, o) => vec![i, o],
        };
        for chan in chans {
            // Channel types are prefix-matched in table order (parse_chan(), chan_kern.c).
            let text = chan.to_string();
            let kind = options::channels()
                .iter()
                .find(|c| text.starts_with(c.name()));
            if let Some(kind) = kind {
                let presence = kind.kernels().presence(&self.env.kernel);
                if presence.is_absent() {
                    self.push(
                        Severity::Error,
                        "channel-not-in-kernel",
                        at,
                        format!(
                            "channel type `{}` {}: the line cannot be set up",
                            kind.name(),
                            presence.reason(&self.env.kernel)
                        ),
                    );
                    continue;
                }
            }
            match chan {
                // getmaster(), pty.c: the pty channel opens a BSD master /dev/pty[p-za-e][0-9a-f];
                // a host without them (no CONFIG_LEGACY_PTYS, as most distributions build) logs
                // `getmaster - no usable host pty devices` and the line has no channel.
                Channel::Pty if self.env.filesystem && !host_has_legacy_ptys() => self.push(
                    Severity::Error,
                    "pty-unavailable",
                    at,
                    "this host has no legacy BSD ptys (/dev/ptyp0 …): the kernel logs \
                     `getmaster - no usable host pty devices` and the line gets no channel; \
                     use pts"
                        .into(),
                ),
                Channel::Tty(dev) if self.env.filesystem && !dev.exists() => self.push(
                    Severity::Error,
                    "tty-missing",
                    at,
                    format!("host tty `{}` does not exist", dev.display()),
                ),
                Channel::Fd(n) if *n > 2 => self.push(
                    Severity::Note,
                    "fd-inherited",
                    at,
                    format!("fd:{n} must be a descriptor the kernel inherits open from its parent"),
                ),
                Channel::Xterm if self.env.var("DISPLAY").is_none() => self.push(
                    Severity::Warning,
                    "xterm-no-display",
                    at,
                    "the xterm channel needs $DISPLAY, which is not set".into(),
                ),
                Channel::Port(p) => self.push(
                    Severity::Note,
                    "port-waits",
                    at,
                    format!("port:{p} listens on every host address and the line waits until a telnet client connects"),
                ),
                _ => {}
            }
        }
    }

    pub(super) fn mac(&mut self, at: Option<(usize, &Arg)>, unit: u64, mac: &crate::cmdline::Mac) {
        let random = format!(
            "the kernel picks a random MAC (`Choosing a random ethernet address for device eth{unit}`)"
        );
        match mac.bytes() {
            None => self.push(
                Severity::Warning,
                "mac-malformed",
                at,
                format!(
                    "`{mac}` is not a MAC: expected six hex bytes like fe:fd:c0:00:02:01; {random}"
                ),
            ),
            Some(b) if b[0] & 1 == 1 => self.push(
                Severity::Warning,
                "mac-multicast",
                at,
                format!("`{mac}` is a multicast address; {random}"),
            ),
            Some([0, 0, 0, 0, 0, 0]) => self.push(
                Severity::Warning,
                "mac-zero",
                at,
                format!("`{mac}` is all zeros; {random}"),
            ),
            Some(b) if b[0] & 2 == 0 => self.push(
                Severity::Warning,
                "mac-global",
                at,
                format!(
                    "`{mac}` is not locally administered (bit 1 of the first byte is clear): \
                     the kernel warns; use e.g. fe:… or 02:…"
                ),
            ),
            Some(_) => {}
        }
    }

    pub(super) fn eth(&mut self, index: usize, arg: &Arg, unit: u64, transport: &Transport) {
        let at = Some((index, arg));
        let profile = &self.env.kernel;
        let name = transport.name();
        let presence = options::transport(name).map(|t| t.kernels().presence(profile));
        if !matches!(presence, Some(Presence::Present | Presence::Unknown)) {
            let known: Vec<&str> = options::transports()
                .iter()
                .filter(|t| !t.kernels().presence(profile).is_absent())
                .map(|t| t.name())
                .collect();
            let message = match presence {
                Some(p) => format!(
                    "transport `{name}` {}: the kernel ignores the option without a message \
                     and creates no eth{unit}",
                    p.reason(profile)
                ),
                None => format!(
                    "unknown transport `{name}`: the kernel ignores the option without a message \
                     and creates no eth{unit}; transports: {}",
                    known.join(", ")
                ),
            };
            self.push(Severity::Error, "eth-transport", at, message);
            return;
        }
        if let Some(first) = self.eth_units.insert(unit, index) {
            self.push(
                Severity::Error,
                "eth-duplicate",
                at,
                format!("eth{unit} is already given by argument {first}: the kernel refuses this one (`Device already configured`)"),
            );
        }
        if let Some(mac) = transport.mac() {
            self.mac(at, unit, mac);
        }
        match transport {
            Transport::Ethertap { dev: None, .. } => self.push(
                Severity::Error,
                "eth-missing-field",
                at,
                "ethertap needs a tap device: eth<n>=ethertap,<dev>[,<mac>,<gate>] (`ethertap_setup : Missing tap device name`)".into(),
            ),
            // ethertap_user.c runs the setuid uml_net helper, which needs the 2.4 ethertap
            // driver: on current hosts bringing the interface up fails with `etap_tramp
            // failed`, and the helper reconfigures the host device's address on the way.
            Transport::Ethertap { dev: Some(dev), .. } => self.push(
                Severity::Warning,
                "ethertap",
                at,
                format!(
                    "ethertap needs the host's long-gone ethertap driver: bringing eth{unit} up \
                     fails (`etap_tramp failed`), and the setuid uml_net helper rewrites the \
                     address of host device `{dev}` on the way; use eth{unit}=tuntap,{dev}"
                ),
            ),
            // tuntap_user.c opens /dev/net/tun with the name: a missing device is created
            // only with CAP_NET_ADMIN, otherwise the open fails when the interface comes up.
            Transport::Tuntap { dev: Some(dev), .. }
                if self.env.filesystem
                    && !Path::new("/sys/class/net").join(dev).exists() =>
            {
                self.push(
                    Severity::Warning,
                    "tuntap-missing",
                    at,
                    format!(
                        "host interface `{dev}` does not exist (no /sys/class/net/{dev}): \
                         without CAP_NET_ADMIN the kernel cannot create it and eth{unit} fails \
                         to come up; create it first (ip tuntap add {dev} mode tap user $USER)"
                    ),
                );
            }
            Transport::Ucast { remote: None, .. } => self.push(
                Severity::Error,
                "eth-missing-field",
                at,
                "ucast needs the peer's address: eth<n>=ucast,<mac>,<remote ip>[,<ports>]".into(),
            ),
            Transport::Daemon { sock_type, ctl, .. } => {
                if let Some(t) = sock_type.as_deref().filter(|t| *t != "unix") {
                    self.push(
                        Severity::Error,
                        "daemon-sock-type",
                        at,
                        format!("socket type `{t}` is not supported: the only working type is `unix`"),
                    );
                }
                let ctl = ctl.clone().unwrap_or_else(|| {
                    // CONFIG_UML_NET_DAEMON_DEFAULT_SOCK in Debian's build.
                    PathBuf::from("/var/run/uml-utilities/uml_switch.ctl")
                });
                self.socket_path(at, "daemon-path-too-long", "daemon control socket", &ctl);
                self.socket_exists(
                    at,
                    "daemon-missing",
                    &ctl,
                    "the kernel connects at boot, logs `daemon_open : control connect failed` and creates no device",
                );
            }
            _ => {}
        }
    }

    pub(super) fn vec(&mut self, index: usize, arg: &Arg, unit: u64, pairs: &[(String, String)]) {
        let at = Some((index, arg));
        if let Some(first) = self.vec_units.insert(unit, index) {
            self.push(
                Severity::Error,
                "vec-duplicate",
                at,
                format!("vec{unit} is already given by argument {first}: the kernel refuses this one (`Device already configured`)"),
            );
        }
        if pairs.len() > MAX_VEC_PAIRS {
            self.push(
                Severity::Error,
                "vec-too-many",
                at,
                format!(
                    "{} key=value pairs: at most {MAX_VEC_PAIRS} are accepted (the kernel does not check and overruns its table)",
                    pairs.len()
                ),
            );
        }
        // The first occurrence of a key wins (uml_vector_fetch_arg, vector_user.c).
        let mut values: BTreeMap<&str, &str> = BTreeMap::new();
        for (k, v) in pairs {
            if values.contains_key(k.as_str()) {
                self.push(
                    Severity::Warning,
                    "vec-repeated-key",
                    at,
                    format!("key `{k}` is repeated: the first value wins"),
                );
            } else {
                values.insert(k, v);
            }
        }
        let Some(name) = values.get("transport") else {
            self.push(
                Severity::Error,
                "vec-no-transport",
                at,
                "no `transport=`: expected transport=tap|hybrid|raw|gre|l2tpv3|bess|fd".into(),
            );
            return;
        };
        // Transports are prefix-compared in table order (vector_kern.c, get_transport_options).
        let Some(spec) = options::vec_transports()
            .iter()
            .find(|t| name.starts_with(t.name()))
        else {
            self.push(
                Severity::Error,
                "vec-transport",
                at,
                format!("unknown vec transport `{name}`: expected tap, hybrid, raw, gre, l2tpv3, bess or fd"),
            );
            return;
        };
        if spec.name() != *name {
            self.push(
                Severity::Warning,
                "vec-transport-prefix",
                at,
                format!(
                    "transport `{name}` is read as `{}` (the kernel compares prefixes)",
                    spec.name()
                ),
            );
        }
        for k in values.keys() {
            let known = options::vec_common_keys().iter().any(|f| f.name() == *k)
                || spec.keys().iter().any(|f| f.name() == *k);
            if !known {
                self.push(
                    Severity::Warning,
                    "vec-unknown-key",
                    at,
                    format!(
                        "key `{k}` means nothing to the {} transport and is ignored",
                        spec.name()
                    ),
                );
            }
        }
        for r in spec.required() {
            if !values.contains_key(r) {
                self.push(
                    Severity::Error,
                    "vec-missing-key",
                    at,
                    format!("the {} transport needs `{r}=`", spec.name()),
                );
            }
        }
        for (a, b) in spec.pairs() {
            if values.contains_key(a) != values.contains_key(b) {
                self.push(
                    Severity::Error,
                    "vec-pair",
                    at,
                    format!("`{a}` and `{b}` must be given together"),
                );
            }
        }
        // vector_transports.c reads these with kstrtoint (base 0) into an unsigned int: a value
        // above INT_MAX (even the 0xffffffff of the kernel's howto) reads as missing, and for
        // l2tpv3's sessions the 7.2 kernel then crashes ("Kernel mode fault") when the
        // interface comes up. A negative number is taken as its two's complement.
        if matches!(spec.name(), "l2tpv3" | "gre") {
            for key in ["rx_session", "tx_session", "rx_key", "tx_key"] {
                let Some(v) = values.get(key) else { continue };
                let digits = v.strip_prefix('-').unwrap_or(v);
                let ok = crate::cmdline::strtoul0(digits)
                    .filter(|(_, used)| *used == digits.len())
                    .is_some_and(|(n, _)| n <= i32::MAX as u64);
                if !ok {
                    self.push(
                        Severity::Error,
                        "vec-int-range",
                        at,
                        format!(
                            "`{key}={v}` is not a number from -2147483648 to 2147483647: the kernel reads it with kstrtoint, takes it for missing{}",
                            if key.ends_with("session") {
                                ", and crashes when the interface comes up"
                            } else {
                                ""
                            }
                        ),
                    );
                }
            }
        }
        if let Some(mtu) = values.get("mtu") {
            let ok = crate::cmdline::strtoul0(mtu)
                .filter(|(_, used)| *used == mtu.len())
                .is_some_and(|(n, _)| (576..=65534).contains(&n));
            if !ok {
                self.push(
                    Severity::Warning,
                    "vec-mtu",
                    at,
                    format!("mtu `{mtu}` is outside 576-65534: the kernel uses 1500"),
                );
            }
        }
        if spec.name() == "bess" {
            for key in ["dst", "src"] {
                if let Some(p) = values.get(key) {
                    self.socket_path(at, "bess-path-too-long", "bess socket", Path::new(p));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::check::{CheckEnv, check};
    use crate::cmdline::CommandLine;

    #[test]
    fn accepted_part_of_a_warned_word_is_still_checked() {
        let c = CommandLine::parse(&[
            "eth0=daemon,,unix,/tmp/nope.ctl,/tmp/data",
            "vec0:transport=hybrid,bare",
        ]);
        let mut env = CheckEnv::offline();
        env.filesystem = true;
        let report = check(&c, &env);
        assert_eq!(report.with_code("eth-ignored-fields").count(), 1);
        assert_eq!(report.with_code("daemon-missing").count(), 1);
        assert_eq!(report.with_code("vec-key-without-value").count(), 1);
        assert_eq!(report.with_code("vec-missing-key").count(), 1);
    }
}
