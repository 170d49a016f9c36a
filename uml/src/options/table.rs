//! The data: every option of the UML kernels umlkit knows (6.1 and 7.x) and the obsolete ones,
//! with which kernels have each and their fates.
//!
//! Two kernels were examined: 6.1.176 (Debian `user-mode-linux` 6.1um4: `--help`,
//! `--showconfig`, boots on a host without AMX) and 7.2.12 (built from Debian's
//! linux-source-7.2: `--help`, `--showconfig`, the source, boots). Where they differ and the
//! series between were not examined, the change is [`AFTER_61`]: "absent in 6.1, present in
//! 7.2", never a guessed version.

use super::{
    Change, ChannelSpec, Completion as C, FieldSpec, InitSlot, Kernels, Matching, OptionSpec,
    Removal, Series, Stage, Status, TransportSpec, ValueKind as V, VecTransportSpec,
};
use crate::cmdline::parsers as p;

/// A change between the two examined kernels: absent in 6.1.176, present in 7.2.12.
const AFTER_61: Change = Change::Between {
    absent: Series(6, 1),
    present: Series(7, 2),
};

/// Gone between the two examined kernels: present in 6.1.176, absent in 7.2.12.
const UNTIL_61: Kernels = Kernels {
    until: Some(AFTER_61),
    ..Kernels::ALL
};

/// New between the two examined kernels.
const SINCE_72: Kernels = Kernels {
    since: Some(AFTER_61),
    ..Kernels::ALL
};

const fn field(name: &'static str, completion: C, help: &'static str) -> FieldSpec {
    FieldSpec {
        name,
        completion,
        default: None,
        help,
    }
}

const fn field_d(
    name: &'static str,
    completion: C,
    default: &'static str,
    help: &'static str,
) -> FieldSpec {
    FieldSpec {
        name,
        completion,
        default: Some(default),
        help,
    }
}

const BASE: OptionSpec = OptionSpec {
    name: "",
    matching: Matching::Prefix,
    syntax: "",
    value: V::Flag,
    default: None,
    stage: Stage::Argv,
    status: Status::Current,
    kernels: Kernels::ALL,
    init: None,
    removed: Removal::Never,
    absent_fate: None,
    parse: None,
    units: None,
    kernel_message: None,
    summary: "",
    help: "",
    fields: &[],
};

/// An option no handler claims on any kernel: it only reaches init.
const OBSOLETE: OptionSpec = OptionSpec {
    matching: Matching::Exact,
    stage: Stage::Unclaimed,
    status: Status::Obsolete,
    init: Some(InitSlot::Argv),
    ..BASE
};

const OBSOLETE_KEY: OptionSpec = OptionSpec {
    matching: Matching::Key,
    value: V::Text,
    init: Some(InitSlot::Env),
    ..OBSOLETE
};

const MAC: FieldSpec = field(
    "mac",
    C::Mac,
    "Ethernet address xx:xx:xx:xx:xx:xx; empty, invalid, multicast or zero: random",
);

static CON_FIELDS: &[FieldSpec] = &[field(
    "channels",
    C::Candidates(&[
        "null", "pts", "pty", "fd:", "port:", "tty:", "xterm", "none",
    ]),
    "<in>,<out> or one channel for both",
)];

pub static OPTIONS: &[OptionSpec] = &[
    // ---- argv stage (`__uml_setup`, arch/um/kernel/um_arch.c and friends) ----
    OptionSpec {
        name: "mem=",
        syntax: "mem=<size>",
        value: V::Size,
        default: Some("64M"),
        init: Some(InitSlot::Env),
        summary: "Guest RAM size",
        help: "Physical memory of the guest. The size is a base-0 number (decimal, 0x hex, leading-0 \
               octal) with an optional K, M, G, T, P or E suffix; trailing junk is ignored. 6.1 leaves \
               the word on the command line, so init also sees mem=... in its environment; \
               7.2 removes it (physmem.c).",
        fields: &[field("size", C::Size, "e.g. 256M")],
        parse: Some(p::mem),
        removed: Removal::Since(AFTER_61),
        ..BASE
    },
    OptionSpec {
        name: "iomem=",
        syntax: "iomem=<name>,<file>",
        value: V::Fields,
        init: Some(InitSlot::Env),
        summary: "Map a host file as an IO memory region",
        help: "Maps <file> (opened read-write) as the IO memory region <name>, used by drivers such \
               as mmapper. Without the comma the kernel logs `parse_iomem : failed to parse iomem`.",
        fields: &[
            field("name", C::None, "region name"),
            field("file", C::File, "host file"),
        ],
        kernels: UNTIL_61,
        absent_fate: Some(
            "is taken by the generic iomem= option (kernel/resource.c, which knows only relaxed \
             and strict): no region is mapped",
        ),
        ..BASE
    },
    OptionSpec {
        name: "initrd=",
        syntax: "initrd=<file>",
        value: V::Path,
        summary: "Load a host file as the initrd",
        help: "Loads the host file <file> as the initial ramdisk.",
        fields: &[field("file", C::File, "initrd image on the host")],
        kernels: Kernels::config("BLK_DEV_INITRD"),
        parse: Some(p::initrd),
        removed: Removal::Since(AFTER_61),
        ..BASE
    },
    OptionSpec {
        name: "root=",
        syntax: "root=<device>",
        value: V::Text,
        default: Some("98:0"),
        stage: Stage::Argv,
        summary: "Root device",
        help: "The root device, parsed by the generic kernel. UML only records that it was given; \
               without it the kernel appends root=98:0 (ubd0). For a hostfs root use \
               root=/dev/root rootfstype=hostfs rootflags=<host dir>.",
        fields: &[field(
            "device",
            C::Candidates(&["/dev/ubda", "/dev/root", "98:0"]),
            "device",
        )],
        parse: Some(p::root),
        ..BASE
    },
    OptionSpec {
        name: "console=",
        syntax: "console=<name>",
        value: V::Text,
        default: Some("tty0"),
        summary: "Preferred kernel console",
        help: "The generic preferred console (tty0, ttyS0, ...). Without it the kernel appends \
               console=tty0. Not to be confused with con=, which sets up console channels.",
        fields: &[field(
            "name",
            C::Candidates(&["tty0", "tty1", "ttyS0"]),
            "console device",
        )],
        ..BASE
    },
    OptionSpec {
        name: "umid=",
        syntax: "umid=<name>",
        value: V::Text,
        default: Some("random 6 characters"),
        removed: Removal::Always,
        summary: "Name of this instance",
        help: "The unique machine id: names the instance directory <uml_dir>/<umid>/ that holds \
               the pid file and the mconsole socket. At most 63 characters; a longer name is \
               dropped without a message and a random one is used. A second umid= is refused with \
               `umid already set`. Removed from the command line.",
        fields: &[field("name", C::None, "at most 63 characters")],
        parse: Some(p::umid),
        ..BASE
    },
    OptionSpec {
        name: "uml_dir=",
        syntax: "uml_dir=<directory>",
        value: V::Path,
        default: Some("~/.uml/"),
        init: Some(InitSlot::Env),
        summary: "Directory for instance directories",
        help: "Where the instance directory <umid>/ is created (one mkdir, parents are not \
               created). A leading ~ is expanded. 6.1 leaves it on the command line, so init sees it \
               in its environment; 7.2 removes it (os-Linux/umid.c).",
        fields: &[field("directory", C::Directory, "host directory")],
        parse: Some(p::uml_dir),
        removed: Removal::Since(AFTER_61),
        ..BASE
    },
    OptionSpec {
        name: "debug",
        syntax: "debug",
        init: None,
        kernel_message: Some("'debug' is not necessary to gdb UML in skas mode - run 'gdb linux'"),
        summary: "Obsolete debugger switch; now the generic debug loglevel",
        help: "Used to start UML under gdb (tt mode). 6.1 only prints a warning that it is not \
               needed; the word stays on the line and sets the generic debug loglevel. Matched by \
               prefix, so anything starting with debug triggers the warning.",
        kernels: UNTIL_61,
        absent_fate: Some("is the generic debug loglevel (init/main.c), without UML's warning"),
        ..BASE
    },
    OptionSpec {
        name: "xterm=",
        syntax: "xterm=<emulator>[,<title switch>[,<exec switch>]]",
        value: V::Fields,
        default: Some("x-terminal-emulator,-T,-e"),
        removed: Removal::Always,
        summary: "Terminal emulator for the xterm channel",
        help: "The program the xterm channel runs, with its title and exec switches. Empty fields \
               keep the defaults. Removed from the command line.",
        fields: &[
            field_d("emulator", C::Command, "x-terminal-emulator", "program"),
            field_d("title-switch", C::None, "-T", "title switch"),
            field_d("exec-switch", C::None, "-e", "exec switch"),
        ],

        ..BASE
    },
    OptionSpec {
        name: "nosysemu",
        syntax: "nosysemu",
        init: Some(InitSlot::Argv),
        summary: "Do not use PTRACE_SYSEMU",
        help: "Turns off the host's PTRACE_SYSEMU support. Stays on the command line, so init gets \
               nosysemu as an argument. Gone in 7.2, which needs PTRACE_SYSEMU or seccomp.",
        kernels: UNTIL_61,
        ..BASE
    },
    OptionSpec {
        name: "quiet",
        syntax: "quiet",
        summary: "Fewer boot messages",
        help: "Suppresses UML's host-side boot messages and sets the generic quiet loglevel.",
        ..BASE
    },
    OptionSpec {
        name: "noreboot",
        syntax: "noreboot",
        init: Some(InitSlot::Argv),
        summary: "Exit instead of rebooting",
        help: "A reboot (reboot, ctrl-alt-del, sysrq b, mconsole reboot/cad) exits the process \
               instead of re-executing the kernel. 6.1 leaves the word on the line, so init \
               gets it as an argument; 7.2 removes it (os-Linux/skas/process.c).",
        removed: Removal::Since(AFTER_61),
        ..BASE
    },
    OptionSpec {
        name: "hostfs=",
        syntax: "hostfs=<root>[,append]",
        value: V::Fields,
        init: Some(InitSlot::Env),
        summary: "Confine hostfs mounts under a host directory",
        help: "Every hostfs mount, including a hostfs root, is taken relative to <root>. The flag \
               append opens files O_APPEND; any other flag logs `hostfs_args - unsupported option`.",
        fields: &[
            field("root", C::Directory, "host directory"),
            field("flags", C::Candidates(&["append"]), "flags"),
        ],
        kernels: Kernels::config("HOSTFS"),
        parse: Some(p::hostfs),
        ..BASE
    },
    OptionSpec {
        name: "--help",
        syntax: "--help",
        summary: "Print the kernel's option help and exit",
        help: "Prints the help of every UML option and exits 0 before booting. Prefix-matched.",
        ..BASE
    },
    OptionSpec {
        name: "--version",
        syntax: "--version",
        summary: "Print the kernel release and exit",
        help: "Prints the bare release (6.1.176, 7.2.12) and exits 0 before booting. Prefix-matched.",

        ..BASE
    },
    OptionSpec {
        name: "--showconfig",
        syntax: "--showconfig",
        summary: "Print the kernel's build configuration and exit",
        help: "Prints the .config the kernel was built with and exits 0 before booting.",
        ..BASE
    },
    // ---- setup stage: UML drivers' `__setup` handlers ----
    OptionSpec {
        name: "ubd",
        syntax: "ubd<n><flags>=<file>[,<backing file>][,<serial>]",
        value: V::Ubd,
        stage: Stage::Setup,
        summary: "Attach a host file as a block device",
        help: "Attaches <file> as /dev/ubd<letter>. <n> is 0-15 or a-p (parsed base 0, so ubd010 \
               is unit 8). Flags, at most 6: r read-only, s O_SYNC, d raw (no COW detection), c \
               shared (no host lock), t no discard. Fields are separated by , or :, so file names \
               cannot contain either. With two files the first is a COW file over the second. \
               ubd=sync makes every disk synchronous.",
        fields: &[
            field(
                "file",
                C::File,
                "image, or COW file when a backing file follows",
            ),
            field("backing", C::File, "backing file of the COW file"),
            field("serial", C::None, "serial shown in /sys/block/ubdX/serial"),
        ],
        kernels: Kernels::config("BLK_DEV_UBD"),
        parse: Some(p::ubd),
        units: Some(crate::cmdline::UBD_UNITS),
        ..BASE
    },
    OptionSpec {
        name: "udb",
        syntax: "udb",
        stage: Stage::Setup,
        kernel_message: Some(
            "udb<rest> specified on command line is almost certainly a ubd -> udb TYPO",
        ),
        summary: "Typo catcher for ubd",
        help: "Any word starting with udb only logs a warning that it is almost certainly a typo \
               of ubd. No disk is attached.",
        ..BASE
    },
    OptionSpec {
        name: "fake_ide",
        syntax: "fake_ide",
        stage: Stage::Setup,
        status: Status::Obsolete,
        kernel_message: Some("The fake_ide option has been removed"),
        summary: "Removed: fake IDE names for ubd disks",
        help: "Used to create /proc/ide entries for ubd disks. 6.1 and 7.2 log that it has been \
               removed and ignore it.",
        ..BASE
    },
    OptionSpec {
        name: "con",
        syntax: "con[<n>]=<channels>",
        value: V::Channels,
        stage: Stage::Setup,
        default: Some("con0=fd:0,fd:1, other consoles x-terminal-emulator (which does not parse)"),
        summary: "Connect virtual consoles to host channels",
        help: "con=<channels> sets every console, con<n>=<channels> console n (0-15, /dev/tty<n>). \
               Channels: fd:<n>, null, port:<tcp port>, pty, pts, tty:<host device>, xterm, or \
               none; <in>,<out> or one for both. Debian's default for con1-15 is not a channel \
               type, so without con= each logs `setup_one_line failed`; con=null avoids that.",
        fields: CON_FIELDS,
        parse: Some(p::con),
        units: Some(crate::cmdline::CON_UNITS),
        ..BASE
    },
    OptionSpec {
        name: "ssl",
        syntax: "ssl[<n>]=<channels>",
        value: V::Channels,
        stage: Stage::Setup,
        default: Some("pty"),
        summary: "Connect serial lines to host channels",
        help: "ssl=<channels> sets every serial line, ssl<n>=<channels> line n (0-63, /dev/ttyS<n>). \
               Channels as for con.",
        fields: CON_FIELDS,
        kernels: Kernels::config("SSL"),
        parse: Some(p::ssl),
        units: Some(crate::cmdline::SSL_UNITS),
        ..BASE
    },
    OptionSpec {
        name: "ssl-non-raw",
        syntax: "ssl-non-raw",
        stage: Stage::Setup,
        summary: "Do not put serial lines' host ttys into raw mode",
        help: "Leaves the host terminals behind serial lines in their current mode instead of raw.",
        ..BASE
    },
    OptionSpec {
        name: "stderr=",
        syntax: "stderr=<n>",
        value: V::Number,
        stage: Stage::Setup,
        summary: "Early console on stderr",
        help: "A non-zero value registers an early console that writes to fd 2 until the real \
               consoles are up.",
        fields: &[field("enable", C::Candidates(&["0", "1"]), "0 or 1")],
        ..BASE
    },
    OptionSpec {
        name: "eth",
        syntax: "eth<n>=<transport>[,<field>...]",
        value: V::Transport,
        stage: Stage::Setup,
        summary: "A network device with a legacy transport",
        help: "Creates eth<n> using <transport> (ethertap, tuntap, daemon, mcast, ucast, slirp, \
               slip, vde) with positional comma-separated fields; an empty field keeps the \
               default. An unknown transport name, or one the kernel is built without \
               (pcap in Debian), is ignored without any message. 7.x has no legacy driver: \
               use vec<n>: there; the word then lands in init's environment.",
        fields: &[field(
            "transport",
            C::Candidates(&[
                "daemon", "tuntap", "ethertap", "mcast", "ucast", "slirp", "slip", "vde",
            ]),
            "transport name",
        )],
        kernels: Kernels::config("UML_NET"),
        parse: Some(p::eth),
        ..BASE
    },
    OptionSpec {
        name: "vec",
        syntax: "vec<n>:<key>=<value>[,<key>=<value>...]",
        value: V::KeyValues,
        stage: Stage::Setup,
        summary: "A network device with the vector driver",
        help: "Creates vec<n>. transport= is required (tap, hybrid, raw, gre, l2tpv3, bess, fd, vde); \
               the other keys depend on it. A key without = is dropped silently, the first of a \
               repeated key wins, at most 20 pairs.",
        fields: &[field(
            "transport",
            C::Candidates(&["tap", "hybrid", "raw", "gre", "l2tpv3", "bess", "fd", "vde"]),
            "transport",
        )],
        kernels: Kernels::config("UML_NET_VECTOR"),
        parse: Some(p::vec),
        ..BASE
    },
    OptionSpec {
        name: "mconsole=",
        syntax: "mconsole=notify:<socket>",
        value: V::Path,
        stage: Stage::Setup,
        summary: "Send mconsole notifications to a socket",
        help: "The kernel sends datagrams (socket ready, panic, guest writes to /proc/mconsole) to \
               the existing AF_UNIX datagram socket <socket>, a filesystem path under 108 bytes.",
        fields: &[field("socket", C::Socket, "datagram socket path")],
        kernels: Kernels::config("MCONSOLE"),
        parse: Some(p::mconsole),
        ..BASE
    },
    OptionSpec {
        name: "virtio_uml.device=",
        syntax: "virtio_uml.device=<socket>:<virtio id>[:<platform id>]",
        value: V::Fields,
        stage: Stage::Module,
        summary: "A vhost-user virtio device",
        help: "Registers a virtio device backed by the vhost-user unix socket <socket>; the ids \
               are decimal. Repeatable.",
        fields: &[
            field("socket", C::Socket, "vhost-user socket"),
            field("virtio-id", C::Number, "virtio device id"),
            field("platform-id", C::Number, "platform id"),
        ],
        kernels: Kernels::config("VIRTIO_UML"),
        parse: Some(p::virtio),
        ..BASE
    },
    // ---- generic kernel parameters a UML user passes ----
    OptionSpec {
        name: "earlyprintk",
        syntax: "earlyprintk",
        stage: Stage::Generic,
        summary: "Print to stdout early in boot",
        help: "Registers a console that prints to stdout before the real consoles are set up.",
        ..BASE
    },
    OptionSpec {
        name: "rootfstype=",
        syntax: "rootfstype=<fs>",
        value: V::Text,
        stage: Stage::Generic,
        summary: "Filesystem type of the root device",
        help: "The filesystem type to mount root as, e.g. hostfs or ext4.",
        fields: &[field(
            "fs",
            C::Candidates(&["hostfs", "ext4", "ext2", "tmpfs"]),
            "filesystem",
        )],
        parse: Some(p::rootfstype),
        ..BASE
    },
    OptionSpec {
        name: "rootflags=",
        syntax: "rootflags=<options>",
        value: V::Text,
        stage: Stage::Generic,
        summary: "Mount options for root; the host directory for a hostfs root",
        help: "Mount data for the root filesystem; for rootfstype=hostfs it is the host directory \
               to use as /.",
        fields: &[field("options", C::Directory, "host directory for hostfs")],
        parse: Some(p::rootflags),
        ..BASE
    },
    OptionSpec {
        name: "rw",
        matching: Matching::Exact,
        syntax: "rw",
        stage: Stage::Generic,
        summary: "Mount root read-write",
        help: "Mounts the root filesystem read-write.",
        ..BASE
    },
    OptionSpec {
        name: "ro",
        matching: Matching::Exact,
        syntax: "ro",
        stage: Stage::Generic,
        summary: "Mount root read-only",
        help: "Mounts the root filesystem read-only.",
        ..BASE
    },
    OptionSpec {
        name: "init=",
        syntax: "init=<program>",
        value: V::Path,
        stage: Stage::Generic,
        default: Some("/sbin/init"),
        summary: "Program to run as init",
        help: "The guest path of the first process.",
        fields: &[field("program", C::File, "guest path")],
        parse: Some(p::init),
        ..BASE
    },
    OptionSpec {
        name: "loglevel=",
        syntax: "loglevel=<0-7>",
        value: V::Number,
        stage: Stage::Generic,
        summary: "Console log level",
        help: "Messages below this level reach the console.",
        fields: &[field(
            "level",
            C::Candidates(&["0", "1", "2", "3", "4", "5", "6", "7"]),
            "level",
        )],
        ..BASE
    },
    OptionSpec {
        name: "lpj=",
        syntax: "lpj=<loops>",
        value: V::Number,
        stage: Stage::Generic,
        summary: "Loops per jiffy: skip the delay-loop calibration",
        help: "Presets the loop count behind udelay() busy waits (per jiffy; HZ is always 100 \
               in UML), so that the kernel does not calibrate it at boot (init/calibrate.c), \
               which takes 0.1-0.2 s of a UML boot. It only scales busy waits, which UML's \
               own drivers hardly make. `uml run` and umld set it from the host's BogoMIPS; \
               one given after theirs wins.",
        ..BASE
    },
    // ---- config-dependent: Debian builds neither 6.1 nor (umlkit's) 7.2 with these ----
    OptionSpec {
        name: "dtb",
        matching: Matching::Key,
        syntax: "dtb=<file>",
        value: V::Path,
        kernels: Kernels::config("OF"),
        removed: Removal::Always,
        summary: "Device tree blob (CONFIG_OF)",
        help: "Loads a device tree from a host file (arch/um/kernel/dtb.c). Only in kernels built \
               with CONFIG_OF; elsewhere the word lands in init's environment and has no effect.",
        fields: &[field("file", C::File, "dtb file")],
        ..BASE
    },
    OptionSpec {
        name: "dsp",
        matching: Matching::Key,
        syntax: "dsp=<device>",
        value: V::Path,
        kernels: Kernels::config("UML_SOUND"),
        removed: Removal::Always,
        default: Some("/dev/sound/dsp"),
        summary: "Host sound device (hostaudio, CONFIG_UML_SOUND)",
        help: "The host dsp device for hostaudio. Only in kernels built with CONFIG_UML_SOUND; \
               elsewhere the word lands in init's environment and has no effect.",
        fields: &[field("device", C::File, "host device")],
        ..BASE
    },
    OptionSpec {
        name: "mixer",
        matching: Matching::Key,
        syntax: "mixer=<device>",
        value: V::Path,
        kernels: Kernels::config("UML_SOUND"),
        removed: Removal::Always,
        default: Some("/dev/sound/mixer"),
        summary: "Host mixer device (hostaudio, CONFIG_UML_SOUND)",
        help: "The host mixer device for hostaudio. Only in kernels built with CONFIG_UML_SOUND; \
               elsewhere the word lands in init's environment and has no effect.",
        fields: &[field("device", C::File, "host device")],
        ..BASE
    },
    OptionSpec {
        name: "time-travel",
        matching: Matching::Exact,
        syntax: "time-travel",
        stage: Stage::Setup,
        kernels: Kernels::config("UML_TIME_TRAVEL_SUPPORT"),
        summary: "Simulated time (CONFIG_UML_TIME_TRAVEL_SUPPORT)",
        help: "Runs the guest on simulated time (arch/um/kernel/time.c). Only in kernels built \
               with CONFIG_UML_TIME_TRAVEL_SUPPORT; elsewhere the word lands in init's argv.",
        ..BASE
    },
    OptionSpec {
        name: "time-travel",
        matching: Matching::Key,
        syntax: "time-travel=<inf-cpu|ext:[<id>:]<socket>>",
        value: V::Text,
        stage: Stage::Setup,
        kernels: Kernels::config("UML_TIME_TRAVEL_SUPPORT"),
        summary: "Simulated time mode (CONFIG_UML_TIME_TRAVEL_SUPPORT)",
        help: "Selects the time-travel mode. Only in kernels built with \
               CONFIG_UML_TIME_TRAVEL_SUPPORT; elsewhere the word lands in init's environment.",
        fields: &[field("mode", C::Candidates(&["inf-cpu", "ext:"]), "mode")],
        ..BASE
    },
    OptionSpec {
        name: "time-travel-start",
        matching: Matching::Key,
        syntax: "time-travel-start=<ns>",
        value: V::Number,
        stage: Stage::Setup,
        kernels: Kernels::config("UML_TIME_TRAVEL_SUPPORT"),
        summary: "Start time for time-travel (CONFIG_UML_TIME_TRAVEL_SUPPORT)",
        help: "Start time in nanoseconds. Only in kernels built with \
               CONFIG_UML_TIME_TRAVEL_SUPPORT; elsewhere the word lands in init's environment.",
        fields: &[field("ns", C::Number, "nanoseconds")],
        ..BASE
    },
    // ---- new after 6.1 (absent from 6.1.176's --help, in 7.2.12's source and --help) ----
    OptionSpec {
        name: "seccomp=",
        syntax: "seccomp=<on|auto|off>",
        value: V::Text,
        kernels: SINCE_72,
        removed: Removal::Always,
        parse: Some(p::seccomp),
        default: Some("off"),
        summary: "Intercept guest syscalls with seccomp instead of ptrace",
        help: "on: guest processes run under a seccomp filter and a signal handler instead of \
               being traced with ptrace; auto: use it when the host allows; off: ptrace. Any other \
               value stops the kernel at start (`Invalid seccomp option`, os-Linux/start_up.c). \
               Removed from the command line. Not in 6.1, where the word lands in init's \
               environment.",
        fields: &[field(
            "mode",
            C::Candidates(&["on", "auto", "off"]),
            "on, auto or off",
        )],
        ..BASE
    },
    OptionSpec {
        name: "ncpus=",
        syntax: "ncpus=<n>",
        value: V::Number,
        kernels: Kernels {
            config: Some("SMP"),
            ..SINCE_72
        },
        removed: Removal::Always,
        summary: "Number of virtual CPUs (CONFIG_SMP)",
        help: "How many virtual CPUs to start, clamped to 1..CONFIG_NR_CPUS (arch/um/kernel/smp.c). \
               Only in kernels with UML SMP support built in (CONFIG_SMP; Debian's 7.2 and \
               umlkit's build lack it). The old tt-mode SMP option of the same name is gone from \
               6.1, where the word lands in init's environment.",
        fields: &[field("n", C::Number, "CPUs")],
        ..BASE
    },
    // ---- obsolete (old Debian man page) ----
    OptionSpec {
        name: "mode",
        syntax: "mode=<tt|skas|skas0>",
        summary: "Removed: tt/skas execution mode",
        help: "Selected tt or skas mode. Kernels since 2.6 have only skas0-style operation; the word is unknown \
               and lands in init's environment as mode=..., the last one winning.",
        fields: &[field(
            "mode",
            C::Candidates(&["tt", "skas", "skas0"]),
            "mode",
        )],
        ..OBSOLETE_KEY
    },
    OptionSpec {
        name: "skas0",
        syntax: "skas0",
        summary: "Removed: force skas0 mode",
        help: "Forced skas0 mode. Unknown to every kernel: lands in init's argv.",
        ..OBSOLETE
    },
    OptionSpec {
        name: "honeypot",
        syntax: "honeypot",
        summary: "Removed: honeypot mode",
        help: "Hid UML from the guest for honeypots (tt mode). Unknown to every kernel: lands in init's argv.",
        ..OBSOLETE
    },
    OptionSpec {
        name: "jail",
        syntax: "jail",
        summary: "Removed: protect kernel memory (tt mode)",
        help: "Protected kernel memory from processes in tt mode. Unknown to every kernel: lands in init's \
               argv.",
        ..OBSOLETE
    },
    OptionSpec {
        name: "fakehd",
        syntax: "fakehd",
        summary: "Removed: name ubd disks hd*",
        help: "Named ubd disks like IDE disks. Unknown to every kernel: lands in init's argv.",
        ..OBSOLETE
    },
    OptionSpec {
        name: "noptraceldt",
        syntax: "noptraceldt",
        summary: "Removed: skas3 host patch knob",
        help: "Disabled PTRACE_LDT of the skas3 host patch. Unknown to every kernel: lands in init's argv.",
        ..OBSOLETE
    },
    OptionSpec {
        name: "noptracefaultinfo",
        syntax: "noptracefaultinfo",
        summary: "Removed: skas3 host patch knob",
        help: "Disabled PTRACE_FAULTINFO of the skas3 host patch. Unknown to every kernel: lands in init's \
               argv.",
        ..OBSOLETE
    },
    OptionSpec {
        name: "noprocmm",
        syntax: "noprocmm",
        summary: "Removed: skas3 host patch knob",
        help: "Disabled /proc/mm of the skas3 host patch. Unknown to every kernel: lands in init's argv.",
        ..OBSOLETE
    },
    OptionSpec {
        name: "debugtrace",
        syntax: "debugtrace",
        kernel_message: Some("'debug' is not necessary to gdb UML in skas mode - run 'gdb linux'"),
        summary: "Removed: trace the tracing thread (tt mode)",
        help: "Debugged UML's tracing thread in tt mode. In 6.1 the debug prefix fires (its warning \
               is printed); on every kernel the word lands in init's argv.",
        ..OBSOLETE
    },
    OptionSpec {
        name: "aio",
        syntax: "aio=2.4",
        summary: "Removed: use 2.4-style AIO",
        help: "Forced 2.4-style host AIO. Unknown to every kernel: lands in init's environment.",
        fields: &[field("version", C::Candidates(&["2.4"]), "version")],
        ..OBSOLETE_KEY
    },
    OptionSpec {
        name: "gdb-pid",
        syntax: "gdb-pid=<pid>",
        summary: "Removed: attach a running gdb (tt mode)",
        help: "Attached the tt-mode debugger to a gdb process. Unknown to every kernel: lands in \
               init's environment.",
        fields: &[field("pid", C::Number, "pid")],
        ..OBSOLETE_KEY
    },
    OptionSpec {
        name: "tty_log_dir",
        syntax: "tty_log_dir=<directory>",
        summary: "Removed: tty logging directory",
        help: "Logged tty traffic to files in a host directory. Unknown to every kernel: lands in \
               init's environment.",
        fields: &[field("directory", C::Directory, "host directory")],
        ..OBSOLETE_KEY
    },
    OptionSpec {
        name: "tty_log_fd",
        syntax: "tty_log_fd=<fd>",
        summary: "Removed: tty logging descriptor",
        help: "Logged tty traffic to a host descriptor. Unknown to every kernel: lands in init's environment.",
        fields: &[field("fd", C::Number, "descriptor")],
        ..OBSOLETE_KEY
    },
];

pub static TRANSPORTS: &[TransportSpec] = &[
    TransportSpec {
        name: "ethertap",
        kernels: Kernels::config("UML_NET_ETHERTAP"),
        ignores_extra: false,
        required: &["dev"],
        summary: "Obsolete ethertap host device, through the uml_net helper",
        fields: &[
            field("dev", C::NetInterface, "host tap device (required)"),
            MAC,
            field("gate", C::Address, "host-side IP address"),
        ],
    },
    TransportSpec {
        name: "tuntap",
        kernels: Kernels::config("UML_NET_TUNTAP"),
        ignores_extra: false,
        required: &[],
        summary: "A host TAP device (/dev/net/tun), or one made by uml_net when dev is empty",
        fields: &[
            field(
                "dev",
                C::NetInterface,
                "host tap device; empty: uml_net creates one",
            ),
            MAC,
            field("gate", C::Address, "host-side IP address for uml_net"),
        ],
    },
    TransportSpec {
        name: "daemon",
        kernels: Kernels::config("UML_NET_DAEMON"),
        ignores_extra: true,
        required: &[],
        summary: "A uml_switch (or `uml switch`) daemon over a unix control socket",
        fields: &[
            MAC,
            field_d(
                "type",
                C::Candidates(&["unix"]),
                "unix",
                "socket type; only unix works",
            ),
            field_d(
                "ctl",
                C::Socket,
                "/var/run/uml-utilities/uml_switch.ctl",
                "the switch's control socket",
            ),
        ],
    },
    TransportSpec {
        name: "mcast",
        kernels: Kernels::config("UML_NET_MCAST"),
        ignores_extra: false,
        required: &[],
        summary: "UDP multicast between guests",
        fields: &[
            MAC,
            field_d("group", C::Address, "239.192.168.1", "multicast group"),
            field_d("port", C::Number, "1102", "UDP port"),
            field_d("ttl", C::Number, "1", "multicast TTL"),
        ],
    },
    TransportSpec {
        name: "ucast",
        kernels: Kernels::config("UML_NET_MCAST"),
        ignores_extra: false,
        required: &["remote"],
        summary: "Point-to-point UDP to one peer",
        fields: &[
            MAC,
            field("remote", C::Address, "peer IP address (required)"),
            field_d("listen-port", C::Number, "1102", "local UDP port"),
            field_d("remote-port", C::Number, "1102", "peer UDP port"),
        ],
    },
    TransportSpec {
        name: "slirp",
        kernels: Kernels::config("UML_NET_SLIRP"),
        ignores_extra: false,
        required: &[],
        summary: "User-space NAT through a slirp program",
        fields: &[
            MAC,
            field_d(
                "argv",
                C::Command,
                "slirp",
                "program and arguments; _ becomes a space",
            ),
        ],
    },
    TransportSpec {
        name: "slip",
        kernels: Kernels::config("UML_NET_SLIP"),
        ignores_extra: false,
        required: &[],
        summary: "IP-only SLIP through the uml_net helper",
        fields: &[field("gate", C::Address, "host-side IP address")],
    },
    TransportSpec {
        name: "vde",
        kernels: Kernels::config("UML_NET_VDE"),
        ignores_extra: true,
        required: &[],
        summary: "A VDE switch through libvdeplug",
        fields: &[
            field("switch", C::Directory, "vde_switch control directory"),
            MAC,
            field_d("port", C::Number, "0", "switch port"),
            field("group", C::None, "group of the port"),
            field_d("mode", C::Number, "0700", "octal mode"),
            field_d(
                "description",
                C::None,
                "UML vde_transport",
                "port description",
            ),
        ],
    },
    TransportSpec {
        name: "pcap",
        kernels: Kernels::config("UML_NET_PCAP"),
        ignores_extra: false,
        required: &[],
        summary: "libpcap capture (CONFIG_UML_NET_PCAP; Debian does not build it)",
        fields: &[
            field("host-if", C::NetInterface, "host interface"),
            field("filter", C::None, "pcap filter"),
            field(
                "option",
                C::Candidates(&["promisc", "nopromisc", "optimize", "nooptimize"]),
                "option",
            ),
            field(
                "option2",
                C::Candidates(&["promisc", "nopromisc", "optimize", "nooptimize"]),
                "option",
            ),
            MAC,
        ],
    },
];

pub static VEC_COMMON_KEYS: &[FieldSpec] = &[
    field(
        "transport",
        C::Candidates(&["tap", "hybrid", "raw", "gre", "l2tpv3", "bess", "fd", "vde"]),
        "transport (required)",
    ),
    MAC,
    field_d("mtu", C::Number, "1500", "576..65534, otherwise 1500"),
    field_d("headroom", C::Number, "2", "headroom"),
    field_d("depth", C::Number, "64", "queue length"),
    field(
        "gro",
        C::Candidates(&["0", "1"]),
        ">0: 64 KiB receive buffers",
    ),
    field(
        "vec",
        C::Candidates(&["0", "1"]),
        "0 disables multi-packet I/O",
    ),
    field("bpffile", C::File, "BPF program file"),
    field(
        "bpfflash",
        C::Candidates(&["0", "1"]),
        ">0 allows loading BPF via ethtool",
    ),
];

const IFNAME: FieldSpec = field("ifname", C::NetInterface, "host interface");
const IFUP: FieldSpec = field("ifup", C::File, "script run with the interface name");
const V6: FieldSpec = field("v6", C::Candidates(&["0", "1"]), "IPv6");
const SRC: FieldSpec = field("src", C::Address, "local address");
const DST: FieldSpec = field("dst", C::Address, "remote address");

pub static VEC_TRANSPORTS: &[VecTransportSpec] = &[
    VecTransportSpec {
        name: "raw",
        summary: "AF_PACKET socket on a host interface",
        keys: &[IFNAME, IFUP],
        required: &["ifname"],
        pairs: &[],
    },
    VecTransportSpec {
        name: "hybrid",
        summary: "tap for transmit, raw socket for receive",
        keys: &[IFNAME, IFUP],
        required: &["ifname"],
        pairs: &[],
    },
    VecTransportSpec {
        name: "tap",
        summary: "A host tap interface (created when ifname is omitted)",
        keys: &[IFNAME, IFUP],
        required: &[],
        pairs: &[],
    },
    VecTransportSpec {
        name: "gre",
        summary: "GRE tunnel",
        keys: &[
            SRC,
            DST,
            V6,
            field("rx_key", C::Number, "receive key"),
            field("tx_key", C::Number, "transmit key"),
            field("sequence", C::Candidates(&["0", "1"]), "sequence numbers"),
            field("pin_sequence", C::Candidates(&["0", "1"]), "pin sequence"),
        ],
        required: &[],
        pairs: &[("rx_key", "tx_key")],
    },
    VecTransportSpec {
        name: "l2tpv3",
        summary: "L2TPv3 tunnel",
        keys: &[
            SRC,
            DST,
            field("srcport", C::Number, "local port"),
            field("dstport", C::Number, "remote port"),
            V6,
            field("udp", C::Candidates(&["0", "1"]), "over UDP"),
            field("rx_session", C::Number, "receive session (required)"),
            field("tx_session", C::Number, "transmit session (required)"),
            field("cookie64", C::Candidates(&["0", "1"]), "64-bit cookies"),
            field("rx_cookie", C::Number, "receive cookie"),
            field("tx_cookie", C::Number, "transmit cookie"),
            field("counter", C::Candidates(&["0", "1"]), "counter"),
            field("pin_counter", C::Candidates(&["0", "1"]), "pin counter"),
        ],
        required: &["rx_session", "tx_session"],
        pairs: &[("rx_session", "tx_session"), ("rx_cookie", "tx_cookie")],
    },
    VecTransportSpec {
        name: "bess",
        summary: "BESS over a unix SOCK_SEQPACKET socket",
        keys: &[
            field("dst", C::Socket, "BESS socket path (under 108 bytes)"),
            field("src", C::Socket, "local bind path"),
        ],
        required: &["dst"],
        pairs: &[],
    },
    VecTransportSpec {
        name: "vde",
        summary: "A VDE switch through vde_plug over a seqpacket socketpair",
        keys: &[
            field("vnl", C::Directory, "VDE network locator (the switch)"),
            field_d("descr", C::None, "UML", "port description"),
            field("port", C::Number, "switch port"),
            field("mode", C::Number, "octal mode"),
            field("group", C::None, "group of the port"),
        ],
        required: &[],
        pairs: &[],
    },
    VecTransportSpec {
        name: "fd",
        summary: "An inherited descriptor",
        keys: &[field("fd", C::Number, "descriptor number")],
        required: &["fd"],
        pairs: &[],
    },
];

pub static CHANNELS: &[ChannelSpec] = &[
    ChannelSpec {
        name: "fd",
        kernels: Kernels::ALL,
        argument: Some(field("fd", C::Number, "host descriptor")),
        summary: "A host file descriptor",
    },
    ChannelSpec {
        name: "null",
        kernels: Kernels::config("NULL_CHAN"),
        argument: None,
        summary: "Discard output, no input",
    },
    ChannelSpec {
        name: "port",
        kernels: Kernels::config("PORT_CHAN"),
        argument: Some(field("port", C::Number, "TCP port")),
        summary: "A telnet port on every host address; the device waits for a client",
    },
    ChannelSpec {
        name: "pty",
        kernels: Kernels::config("PTY_CHAN"),
        argument: None,
        summary: "A BSD pty master",
    },
    ChannelSpec {
        name: "pts",
        kernels: Kernels::config("PTY_CHAN"),
        argument: None,
        summary: "A /dev/ptmx pseudo-terminal; the log names the /dev/pts device",
    },
    ChannelSpec {
        name: "tty",
        kernels: Kernels::config("TTY_CHAN"),
        argument: Some(field("device", C::HostTty, "host tty device")),
        summary: "A host terminal device",
    },
    ChannelSpec {
        name: "xterm",
        kernels: Kernels::config("XTERM_CHAN"),
        argument: None,
        summary: "A terminal emulator window (needs $DISPLAY)",
    },
    ChannelSpec {
        name: "none",
        kernels: Kernels::ALL,
        argument: None,
        summary: "The line is not configured",
    },
];
