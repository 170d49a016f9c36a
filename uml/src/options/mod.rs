//! The UML kernel's command-line options, declared once as data.
//!
//! [`all`] is one static table of every option a 6.1 UML kernel (`linux` 6.1.176 as Debian
//! builds it) understands, plus the obsolete ones from the old Debian man page with what 6.1
//! really does with them. Each [`OptionSpec`] says how the kernel matches the word (by prefix,
//! longest first, exactly as `arch/um/kernel/um_arch.c` and `init/main.c` do), its value
//! grammar, default, [`Status`], where it ends up if the kernel leaves it for init ([`InitSlot`]),
//! a summary, a longer help text and per-field [`Completion`] hints.
//!
//! The sub-grammars live in their own tables: the `eth` transports ([`transports`]), the `vec`
//! transports and keys ([`vec_transports`], [`vec_common_keys`]) and the console channel types
//! ([`channels`]).
//!
//! Guarantee: a man page, `--help` text and bash/zsh/fish completions can be generated from these
//! tables alone; [`crate::cmdline`] parses with [`lookup`], so the parser and the documentation
//! cannot disagree on which option a word is.

pub mod complete;
pub mod man;
mod table;

use table::{CHANNELS, OPTIONS, TRANSPORTS, VEC_COMMON_KEYS, VEC_TRANSPORTS};

/// Every option, in the order a reference page should list them: argv-stage UML options,
/// setup-stage UML options, generic kernel options, then obsolete and config-dependent ones.
pub fn all() -> &'static [OptionSpec] {
    OPTIONS
}

/// The option the kernel would hand `word` to, or `None` when no handler claims it (the kernel
/// then passes it to init).
///
/// Matching follows the kernel: a [`Matching::Prefix`] entry claims every word that starts with
/// its name, and the longest matching name wins (so `ssl-non-raw` beats `ssl`, `console=` beats
/// `con`, `debugtrace` is listed on its own although the kernel's `debug` prefix also fires).
pub fn lookup(word: &str) -> Option<&'static OptionSpec> {
    OPTIONS
        .iter()
        .filter(|spec| spec.matches(word))
        .max_by_key(|spec| spec.name.len())
}

/// The table entry whose [`OptionSpec::name`] is exactly `name` (e.g. `"mem="`, `"ubd"`).
pub fn by_name(name: &str) -> Option<&'static OptionSpec> {
    OPTIONS.iter().find(|spec| spec.name == name)
}

/// The `eth` transport called `name` (`daemon`, `tuntap`, …), including ones not built into
/// the 6.1 kernel (`pcap`, see [`TransportSpec::built`]).
pub fn transport(name: &str) -> Option<&'static TransportSpec> {
    TRANSPORTS.iter().find(|t| t.name == name)
}

/// Every `eth` transport.
pub fn transports() -> &'static [TransportSpec] {
    TRANSPORTS
}

/// Every `vec` transport (`transport=` values).
pub fn vec_transports() -> &'static [VecTransportSpec] {
    VEC_TRANSPORTS
}

/// The `vec` transport called `name`.
pub fn vec_transport(name: &str) -> Option<&'static VecTransportSpec> {
    VEC_TRANSPORTS.iter().find(|t| t.name == name)
}

/// Keys every `vec` transport accepts (`transport`, `mac`, `mtu`, …).
pub fn vec_common_keys() -> &'static [FieldSpec] {
    VEC_COMMON_KEYS
}

/// Every console/serial-line channel type (`fd:`, `null`, `pts`, `tty:`, …).
pub fn channels() -> &'static [ChannelSpec] {
    CHANNELS
}

/// One kernel command-line option.
#[derive(Debug, PartialEq, Eq)]
pub struct OptionSpec {
    pub(crate) name: &'static str,
    pub(crate) matching: Matching,
    pub(crate) syntax: &'static str,
    pub(crate) value: ValueKind,
    pub(crate) default: Option<&'static str>,
    pub(crate) stage: Stage,
    pub(crate) status: Status,
    pub(crate) init: Option<InitSlot>,
    pub(crate) removed: bool,
    pub(crate) kernel_message: Option<&'static str>,
    pub(crate) summary: &'static str,
    pub(crate) help: &'static str,
    pub(crate) fields: &'static [FieldSpec],
}

impl OptionSpec {
    /// The text the kernel compares words against, e.g. `mem=`, `ubd`, `ssl-non-raw`, `rw`.
    /// For [`Matching::Key`] entries it is the part before `=` (`mode`, `gdb-pid`).
    pub fn name(&self) -> &'static str {
        self.name
    }
    /// How a word is matched against [`name`](Self::name).
    pub fn matching(&self) -> Matching {
        self.matching
    }
    /// Does the kernel hand `word` to this option's handler?
    pub fn matches(&self, word: &str) -> bool {
        match self.matching {
            Matching::Prefix => word.starts_with(self.name),
            Matching::Exact => word == self.name,
            Matching::Key => word
                .split_once('=')
                .is_some_and(|(key, _)| key == self.name),
        }
    }
    /// Synopsis for a man page, e.g. `ubd<n><flags>=<file>[,<backing>][,<serial>]`.
    pub fn syntax(&self) -> &'static str {
        self.syntax
    }
    /// The value grammar.
    pub fn value(&self) -> ValueKind {
        self.value
    }
    /// What the kernel uses when the option is absent, as text (`64M`, `~/.uml/`).
    pub fn default(&self) -> Option<&'static str> {
        self.default
    }
    /// Which part of the kernel parses it.
    pub fn stage(&self) -> Stage {
        self.stage
    }
    /// Current, absent from this build, or obsolete.
    pub fn status(&self) -> Status {
        self.status
    }
    /// Where the word ends up in 6.1 if the kernel leaves it for init: `Some(Argv)` for bare
    /// words like `noreboot`, `Some(Env)` for `mem=…`; `None` when it is consumed.
    pub fn init(&self) -> Option<InitSlot> {
        self.init
    }
    /// The argv-stage handler removes the word from the kernel command line (`umid=`, `xterm=`).
    pub fn removed_from_cmdline(&self) -> bool {
        self.removed
    }
    /// What the 6.1 kernel logs when it sees this option at all (obsolete warnings).
    pub fn kernel_message(&self) -> Option<&'static str> {
        self.kernel_message
    }
    /// One line for completion menus and `--help`.
    pub fn summary(&self) -> &'static str {
        self.summary
    }
    /// A paragraph for a man page and `uml check --explain`.
    pub fn help(&self) -> &'static str {
        self.help
    }
    /// The value's fields in order, each with a completion hint. Empty for flags.
    pub fn fields(&self) -> &'static [FieldSpec] {
        self.fields
    }
    /// True for options a user should not pass to a 6.1 kernel (obsolete or not built).
    pub fn is_noop(&self) -> bool {
        !matches!(self.status, Status::Current)
    }
}

/// How the kernel matches a word to an option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matching {
    /// The word starts with the name (`strncmp` over the name's length; `ubd`, `mem=`, `quiet`).
    Prefix,
    /// The word is exactly the name (`rw`, `skas0`).
    Exact,
    /// The word is `<name>=<anything>` (unknown options that init gets in its environment).
    Key,
}

/// The shape of an option's value, for documentation and completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// No value: the word alone (`noreboot`, `ssl-non-raw`).
    Flag,
    /// A memparse size: a base-0 number with an optional `K M G T P E` suffix.
    Size,
    /// An integer.
    Number,
    /// A host path.
    Path,
    /// Free text.
    Text,
    /// Comma-separated positional fields, described by [`OptionSpec::fields`].
    Fields,
    /// `ubd<n><flags>=<file>[,<backing>][,<serial>]`.
    Ubd,
    /// A channel pair `<in>,<out>` or a single channel, see [`channels`].
    Channels,
    /// `<transport>,<positional fields>`, see [`transports`].
    Transport,
    /// `<key>=<value>,…`, see [`vec_transports`] and [`vec_common_keys`].
    KeyValues,
}

/// Which part of the kernel parses an option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// UML's argv scan (`__uml_setup`, `um_arch.c`), before the kernel starts.
    Argv,
    /// UML drivers' `__setup` handlers during generic parsing (`ubd`, `con`, `eth`, …).
    Setup,
    /// Generic kernel parameters (`root=`, `init=`, `loglevel=`, early params).
    Generic,
    /// A module parameter (`virtio_uml.device=`).
    Module,
    /// Claimed by nothing in this build: passed to init.
    Unclaimed,
}

/// Whether a 6.1 kernel still does what the option promises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Works in 6.1 as built by Debian.
    Current,
    /// Exists in the source only behind a config option that Debian's 6.1 build lacks.
    NotBuilt,
    /// Removed; the 6.1 fate is in [`OptionSpec::init`] and [`OptionSpec::kernel_message`].
    Obsolete,
}

/// Where an option the kernel does not consume ends up in init (`init/main.c`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitSlot {
    /// A word without `=`: one of init's arguments.
    Argv,
    /// `name=value`: one of init's environment variables.
    Env,
}

/// One field of a value: a positional field, a `key=` of a key/value list, or the file part.
#[derive(Debug, PartialEq, Eq)]
pub struct FieldSpec {
    pub(crate) name: &'static str,
    pub(crate) completion: Completion,
    pub(crate) default: Option<&'static str>,
    pub(crate) help: &'static str,
}

impl FieldSpec {
    /// The field's name (`mac`, `ctl`, or the `vec` key itself).
    pub fn name(&self) -> &'static str {
        self.name
    }
    /// How a shell should complete it.
    pub fn completion(&self) -> Completion {
        self.completion
    }
    /// The kernel's value when the field is empty or absent.
    pub fn default(&self) -> Option<&'static str> {
        self.default
    }
    /// One line.
    pub fn help(&self) -> &'static str {
        self.help
    }
}

/// What a completion generator should offer for a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// Nothing useful to offer.
    None,
    /// Any file.
    File,
    /// A directory.
    Directory,
    /// A unix socket file.
    Socket,
    /// A size (`128M`).
    Size,
    /// A number.
    Number,
    /// One of these words.
    Candidates(&'static [&'static str]),
    /// A host terminal device (`/dev/tty*`, `/dev/pts/*`).
    HostTty,
    /// A host network interface name.
    NetInterface,
    /// A MAC address.
    Mac,
    /// An IP address.
    Address,
    /// An executable on `PATH`.
    Command,
}

/// One `eth` transport.
#[derive(Debug)]
pub struct TransportSpec {
    pub(crate) name: &'static str,
    pub(crate) built: bool,
    pub(crate) ignores_extra: bool,
    pub(crate) required: &'static [&'static str],
    pub(crate) summary: &'static str,
    pub(crate) fields: &'static [FieldSpec],
}

impl TransportSpec {
    /// The name after `eth<n>=`.
    pub fn name(&self) -> &'static str {
        self.name
    }
    /// False when the 6.1 build lacks it: the kernel then ignores the option without a word.
    pub fn built(&self) -> bool {
        self.built
    }
    /// The kernel warns about, then ignores, fields past the last one (`daemon`, `vde`); every
    /// other transport fails with `Extra garbage on specification`.
    pub fn ignores_extra_fields(&self) -> bool {
        self.ignores_extra
    }
    /// Fields that must not be empty.
    pub fn required(&self) -> &'static [&'static str] {
        self.required
    }
    /// One line.
    pub fn summary(&self) -> &'static str {
        self.summary
    }
    /// Positional fields after the name, in order. `slirp`'s last field repeats.
    pub fn fields(&self) -> &'static [FieldSpec] {
        self.fields
    }
}

/// One `vec` transport.
#[derive(Debug)]
pub struct VecTransportSpec {
    pub(crate) name: &'static str,
    pub(crate) summary: &'static str,
    pub(crate) keys: &'static [FieldSpec],
    pub(crate) required: &'static [&'static str],
    pub(crate) pairs: &'static [(&'static str, &'static str)],
}

impl VecTransportSpec {
    /// The `transport=` value.
    pub fn name(&self) -> &'static str {
        self.name
    }
    /// One line.
    pub fn summary(&self) -> &'static str {
        self.summary
    }
    /// Keys this transport accepts besides [`vec_common_keys`].
    pub fn keys(&self) -> &'static [FieldSpec] {
        self.keys
    }
    /// Keys that must be present.
    pub fn required(&self) -> &'static [&'static str] {
        self.required
    }
    /// Keys that must be given together or not at all.
    pub fn pairs(&self) -> &'static [(&'static str, &'static str)] {
        self.pairs
    }
}

/// One console/serial-line channel type.
#[derive(Debug)]
pub struct ChannelSpec {
    pub(crate) name: &'static str,
    pub(crate) argument: Option<FieldSpec>,
    pub(crate) summary: &'static str,
}

impl ChannelSpec {
    /// The type as written (`fd`, `null`, `pts`, …); with an argument it is followed by `:`.
    pub fn name(&self) -> &'static str {
        self.name
    }
    /// The part after `:` (`fd:<n>`, `port:<n>`, `tty:<device>`), if the type takes one.
    pub fn argument(&self) -> Option<&FieldSpec> {
        self.argument.as_ref()
    }
    /// One line.
    pub fn summary(&self) -> &'static str {
        self.summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins() {
        assert_eq!(lookup("ssl-non-raw").unwrap().name(), "ssl-non-raw");
        assert_eq!(lookup("ssl3=pts").unwrap().name(), "ssl");
        assert_eq!(lookup("console=tty0").unwrap().name(), "console=");
        assert_eq!(lookup("con3=null").unwrap().name(), "con");
        assert_eq!(lookup("rootfstype=hostfs").unwrap().name(), "rootfstype=");
        assert_eq!(lookup("debugtrace").unwrap().name(), "debugtrace");
        assert_eq!(lookup("udbx").unwrap().name(), "udb");
    }

    #[test]
    fn unknown_words_match_nothing() {
        assert!(lookup("hello").is_none());
        assert!(lookup("foo=bar").is_none());
        // `rw` is matched exactly by the generic parser; `rwx` goes to init.
        assert!(lookup("rwx").is_none());
    }

    #[test]
    fn obsolete_options_say_where_they_land() {
        let mode = lookup("mode=tt").unwrap();
        assert_eq!(mode.status(), Status::Obsolete);
        assert_eq!(mode.init(), Some(InitSlot::Env));
        assert_eq!(lookup("honeypot").unwrap().init(), Some(InitSlot::Argv));
        assert_eq!(lookup("mem=64M").unwrap().init(), Some(InitSlot::Env));
        assert_eq!(lookup("umid=x").unwrap().init(), None);
    }

    #[test]
    fn table_is_consistent() {
        for spec in all() {
            assert!(!spec.summary().is_empty(), "{} has a summary", spec.name());
            assert!(!spec.help().is_empty(), "{} has help", spec.name());
            assert!(spec.syntax().starts_with(spec.name().trim_end_matches('=')));
            assert_eq!(
                all()
                    .iter()
                    .filter(|s| s.name() == spec.name() && s.matching() == spec.matching())
                    .count(),
                1,
                "{} is declared once",
                spec.name()
            );
            if spec.value() == ValueKind::Flag {
                assert!(spec.fields().is_empty(), "{} is a flag", spec.name());
            }
        }
        for t in transports() {
            for r in t.required() {
                assert!(t.fields().iter().any(|f| f.name() == *r));
            }
        }
        for t in vec_transports() {
            for (a, b) in t.pairs() {
                assert!(t.keys().iter().any(|f| f.name() == *a));
                assert!(t.keys().iter().any(|f| f.name() == *b));
            }
        }
    }
}
